"""Fine-tuning with an explicit L2 penalty toward zero: lambda/2 * ||w||^2 added to the loss.

Unlike AdamW's decoupled weight decay (Loshchilov and Hutter 2019), which shrinks every weight by the same
factor outside the adaptive update, this penalty goes through the gradient and is rescaled per parameter
by Adam's second-moment estimate. Decoupled decay is therefore off (``weight_decay = 0``).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.backbones.base import Classifier
from bench.strategies import penalties
from bench.strategies.base import Hyperparameter, Hyperparameters, Step, Strategy, register_strategy


@register_strategy
class L2(Strategy):
    name = "l2"
    description = "fine-tune all weights with an L2 penalty lambda/2 ||w||^2 toward zero"

    hyperparameters = {
        "weight_decay": Hyperparameter(
            type="fixed", default=0.0, source="the penalty replaces AdamW's decoupled decay"
        ),
        # lambda 1e-4 (the usual weight decay, as a penalty): gradient ratio 4e-4 to 1e-3; 1e-2 acts (0.04-0.08)
        "lambda": Hyperparameter(
            1e-5, 1.0, scale="log", default=1e-2, source="the smallest tried that acts (gradient ratio 0.04-0.08)"
        ),
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        self.params = list(model.parameters())
        return [{"params": self.params}]

    def extra_loss(self, model: Classifier, hp: Hyperparameters, step: Step | None = None) -> torch.Tensor:
        return self._penalty(hp)

    def _penalty(self, hp: Hyperparameters) -> torch.Tensor:
        return hp["lambda"] / 2 * penalties.l2(self.params)
