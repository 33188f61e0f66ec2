"""The baseline every strategy is compared with: the same architecture, random init, all weights train."""

from __future__ import annotations

from bench.strategies.base import Hyperparameter, Role, Strategy, register_strategy


@register_strategy
class Scratch(Strategy):
    name = "scratch"
    role = Role.SCRATCH
    description = "same architecture with random weights, all weights train (the baseline)"
    pretrained = False
    step_scale = 3  # random weights learn slower than pretrained ones: three times the steps, the same early stopping
    hyperparameters = {
        "lr": Hyperparameter(
            1e-4, 3e-2, scale="log", default=1e-3, source="Adam's default learning rate (Kingma and Ba 2015)"
        )
    }
