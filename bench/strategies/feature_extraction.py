"""Linear probe: the pretrained backbone stays frozen; only a linear head trains, on cached features."""

from __future__ import annotations

from typing import Any

import optuna

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameters, Strategy, register_strategy


@register_strategy
class FeatureExtraction(Strategy):
    name = "feature_extraction"
    description = "frozen pretrained backbone, linear head trained on its features"
    frozen_backbone = True

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        model.backbone.requires_grad_(False)
        return [{"params": list(model.head.parameters())}]
