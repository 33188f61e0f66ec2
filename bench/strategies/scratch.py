"""The baseline every strategy is compared with: the same architecture, random init, all weights train."""

from __future__ import annotations

import optuna

from bench.strategies.base import Hyperparameters, Role, Strategy, register_strategy


@register_strategy
class Scratch(Strategy):
    name = "scratch"
    role = Role.SCRATCH
    description = "same architecture with random weights, all weights train (the baseline)"
    pretrained = False
    step_scale = 3  # random weights learn slower than pretrained ones: three times the steps, the same early stopping
    defaults = {"lr": 1e-3, "weight_decay": 1e-4}  # Adam's default learning rate (Kingma and Ba 2015)

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        }
