"""Full fine-tuning: every weight trains, starting from the pretrained backbone."""

from __future__ import annotations

from bench.strategies.base import Strategy, register_strategy


@register_strategy
class Finetune(Strategy):
    name = "finetune"
    description = "all weights train, starting from the pretrained backbone"


@register_strategy
class FinetuneReplica(Finetune):
    """``finetune`` again with other initialisation and shuffling seeds on the same examples: two names for one
    strategy, so an A/A run (experiments/aa.yaml) measures how often the verdicts call equals different."""

    name = "finetune_replica"
    description = "finetune again with other initialisation and shuffling seeds (for A/A runs)"
    seed_offset = 1_000
