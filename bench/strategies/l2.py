"""Fine-tuning with an explicit L2 penalty toward zero: lambda/2 * ||w||^2 added to the loss.

Unlike AdamW's decoupled weight decay (Loshchilov and Hutter 2019), which shrinks every weight by the same
factor outside the adaptive update, this penalty goes through the gradient and is rescaled per parameter
by Adam's second-moment estimate. Decoupled decay is therefore off (``weight_decay = 0``).
"""

from __future__ import annotations

from typing import Any

import optuna
import torch

from bench.backbones.base import Classifier
from bench.strategies import penalties
from bench.strategies.base import FINE_TUNING_LR, Hyperparameters, Step, Strategy, register_strategy


@register_strategy
class L2(Strategy):
    name = "l2"
    # lambda 1e-4 (the usual weight decay, as a penalty): gradient ratio 4e-4 to 1e-3; 1e-2 acts (0.04-0.08)
    defaults = {"lr": FINE_TUNING_LR, "lambda": 1e-2}
    description = "fine-tune all weights with an L2 penalty lambda/2 ||w||^2 toward zero"

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": 0.0,
            "lambda": trial.suggest_float("lambda", 1e-5, 1.0, log=True),
        }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        self.params = list(model.parameters())
        return [{"params": self.params}]

    def extra_loss(self, model: Classifier, hp: Hyperparameters, step: Step | None = None) -> torch.Tensor:
        return self.penalty(hp)

    def penalty(self, hp: Hyperparameters) -> torch.Tensor:
        return hp["lambda"] / 2 * penalties.l2(self.params)
