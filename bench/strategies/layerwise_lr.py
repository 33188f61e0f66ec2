"""Discriminative learning rates (Howard and Ruder 2018, ULMFiT): lr * decay^d for a block d steps below the head.

General features near the input change little; task-specific layers near the head adapt fastest.
"""

from __future__ import annotations

from typing import Any

import optuna

from bench.backbones.base import Classifier
from bench.strategies.base import FINE_TUNING_LR, Hyperparameters, Strategy, register_strategy


@register_strategy
class LayerwiseLR(Strategy):
    name = "layerwise_lr"
    defaults = {
        "lr": FINE_TUNING_LR,
        "weight_decay": 1e-4,
        "decay": 0.75,
    }  # layer decay as BEiT and ELECTRA tune it (0.65-0.9)
    description = "fine-tune all weights with learning rates decaying by a factor per block from head to input"

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
            "decay": trial.suggest_float("decay", 0.5, 1.0),
        }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        named = dict(model.backbone.named_parameters())
        blocks = model.backbone.blocks()
        groups = [
            {"params": [named[n] for n in block], "lr": hp["lr"] * hp["decay"] ** (len(blocks) - i)}
            for i, block in enumerate(blocks)
        ]
        return [*groups, {"params": list(model.head.parameters()), "lr": hp["lr"]}]
