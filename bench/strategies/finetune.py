"""Full fine-tuning: every weight trains, starting from the pretrained backbone."""

from __future__ import annotations

from bench.strategies.base import Strategy, register_strategy


@register_strategy
class Finetune(Strategy):
    name = "finetune"
    description = "all weights train, starting from the pretrained backbone"
