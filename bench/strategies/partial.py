"""Partial fine-tuning: only the top k blocks of the backbone (and the head) train; the rest stay frozen.

Blocks come from the backbone (``Backbone.blocks``: stem, stages, last layers, ordered from the input).
BatchNorm running statistics of frozen blocks still adapt to the new data; their weights do not change.
"""

from __future__ import annotations

from typing import Any

import optuna

from bench.backbones.base import Classifier
from bench.strategies.base import FINE_TUNING_LR, Hyperparameters, Strategy, register_strategy


@register_strategy
class Partial(Strategy):
    name = "partial"
    defaults = {
        "lr": FINE_TUNING_LR,
        "weight_decay": 1e-4,
        "k": 2,
    }  # the last two blocks, as the common "fine-tune the top"
    description = "fine-tune only the top k backbone blocks and the head (k searched), the rest frozen"

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
            "k": trial.suggest_int("k", 1, 6),
        }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        blocks = model.backbone.blocks()
        trainable = {name for block in blocks[-hp["k"] :] for name in block}
        for name, p in model.backbone.named_parameters():
            p.requires_grad_(name in trainable)
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
