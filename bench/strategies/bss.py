"""BSS, Batch Spectral Shrinkage (Chen et al., NeurIPS 2019): fine-tune while shrinking the smallest singular values
of the batch's feature matrix, the directions along which the pretrained features transfer worst.

Loss += eta * sum_{i=1..k} sigma_{-i}^2, with sigma_{-1} <= ... the smallest singular values of the (batch x
feature_dim) matrix of backbone features of the current batch (k = 1 as in the paper; eta tuned around the
paper's 0.001). Everything trains, with AdamW's weight decay, as ``finetune``.
"""

from __future__ import annotations

import torch

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameter, Hyperparameters, Step, Strategy, register_strategy

K = 1  # singular values shrunk; the paper found k = 1 enough


def shrinkage(features: torch.Tensor, k: int = K) -> torch.Tensor:
    """sum of the k smallest squared singular values of ``features`` (batch x dim)."""
    singular = torch.linalg.svdvals(features)  # descending; min(batch, dim) of them
    return singular[-k:].pow(2).sum()


@register_strategy
class BSS(Strategy):
    name = "bss"
    description = "fine-tune with eta * (smallest singular value of the batch's features)^2 (Chen et al. 2019)"

    hyperparameters = {"eta": Hyperparameter(1e-4, 1e-1, scale="log", default=1e-3, source="Chen et al. 2019's eta")}

    def extra_loss(self, model: Classifier, hp: Hyperparameters, step: Step) -> torch.Tensor:
        return hp["eta"] * shrinkage(step.features)
