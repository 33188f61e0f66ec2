"""Surgical fine-tuning (Lee et al., ICLR 2023): fine-tune only the first k blocks of the backbone.

For input-level shifts (corruptions, new sensors) the early layers are the ones that need to change;
the rest of the pretrained network and its features stay as they are. The head trains as usual.
"""

from typing import Any

import optuna

from bench.backbones.base import Classifier
from bench.strategies import Hyperparameters, Strategy, register_strategy


@register_strategy
class Surgical(Strategy):
    name = "surgical"
    description = "fine-tune only the first k backbone blocks and the head (Lee et al. 2023)"

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
            "k": trial.suggest_int("k", 1, 3),
        }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        first = {name for block in model.backbone.blocks()[: hp["k"]] for name in block}
        for name, p in model.backbone.named_parameters():
            p.requires_grad_(name in first)
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
