"""Discriminative learning rates (Howard and Ruder 2018, ULMFiT): lr * decay^d for a block d steps below the head.

General features near the input change little; task-specific layers near the head adapt fastest.
"""

from __future__ import annotations

from typing import Any

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameter, Hyperparameters, Strategy, register_strategy


@register_strategy
class LayerwiseLR(Strategy):
    name = "layerwise_lr"
    description = "fine-tune all weights with learning rates decaying by a factor per block from head to input"

    hyperparameters = {
        "decay": Hyperparameter(0.5, 1.0, default=0.75, source="layer decay as BEiT and ELECTRA tune it (0.65-0.9)")
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        named = dict(model.backbone.named_parameters())
        blocks = model.backbone.blocks()
        groups = [
            {"params": [named[n] for n in block], "lr": hp["lr"] * hp["decay"] ** (len(blocks) - i)}
            for i, block in enumerate(blocks)
        ]
        return [*groups, {"params": list(model.head.parameters()), "lr": hp["lr"]}]
