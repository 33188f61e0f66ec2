"""Partial fine-tuning: only the top k blocks of the backbone (and the head) train; the rest stay frozen.

Blocks come from the backbone (``Backbone.blocks``: stem, stages, last layers, ordered from the input).
BatchNorm running statistics of frozen blocks still adapt to the new data; their weights do not change.
"""

from __future__ import annotations

from typing import Any

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameter, Hyperparameters, Strategy, register_strategy


@register_strategy
class Partial(Strategy):
    name = "partial"
    description = "fine-tune only the top k backbone blocks and the head (k searched), the rest frozen"

    hyperparameters = {
        "k": Hyperparameter(1, 6, type="int", default=2, source='the last two blocks, the common "fine-tune the top"')
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        blocks = model.backbone.blocks()
        trainable = {name for block in blocks[-hp["k"] :] for name in block}
        for name, p in model.backbone.named_parameters():
            p.requires_grad_(name in trainable)
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
