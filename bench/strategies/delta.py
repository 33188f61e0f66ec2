"""DELTA-style feature regularisation (Li et al., ICLR 2019): fine-tune while keeping the backbone's features of
each batch near those of the starting, pretrained backbone.

Loss += alpha/2 * mean over the batch of ||f(x) - f0(x)||^2, with f the backbone being trained and f0 a frozen
copy of it made at the start of the run, both on the current batch ``x``. This is DELTA's behavioural
regulariser on the backbone's output features with uniform channel weights (TLlib's ``BehavioralRegularization``,
without DELTA's supervised attention over channels), averaged over the batch so that alpha does not depend on the
batch size. Decoupled weight decay applies to the new head only, as DELTA's separate L2 term on it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameter, Hyperparameters, Step, Strategy, register_strategy


def feature_distance(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """mean over the batch of the squared distance between two (batch x dim) feature matrices."""
    return (features - reference).pow(2).sum(dim=1).mean()


@register_strategy
class DELTA(Strategy):
    name = "delta"
    description = "fine-tune with alpha/2 ||f(x) - f_pretrained(x)||^2 on the batch's features (Li et al. 2019)"

    hyperparameters = {
        "alpha": Hyperparameter(1e-4, 1.0, scale="log", default=0.01, source="the log-midpoint of its search range")
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        # the model is on its device already: the copy is too; eval(): its BatchNorm and dropout stay as they were
        self.reference = copy.deepcopy(model.backbone).eval().requires_grad_(False)
        return [
            {"params": list(model.backbone.parameters()), "weight_decay": 0.0},
            {"params": list(model.head.parameters())},
        ]

    def extra_loss(self, model: Classifier, hp: Hyperparameters, step: Step) -> torch.Tensor:
        with torch.no_grad():
            reference = self.reference(step.inputs)
        return hp["alpha"] / 2 * feature_distance(step.features, reference)
