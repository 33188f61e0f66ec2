"""Surgical fine-tuning (Lee et al., ICLR 2023): fine-tune only the first k blocks of the backbone.

For input-level shifts (corruptions, new sensors) the early layers are the ones that need to change;
the rest of the pretrained network and its features stay as they are. The head trains as usual.
"""

from typing import Any

from bench.backbones.base import Classifier
from bench.strategies import Hyperparameter, Hyperparameters, Strategy, register_strategy


@register_strategy
class Surgical(Strategy):
    name = "surgical"
    description = "fine-tune only the first k backbone blocks and the head (Lee et al. 2023)"
    hyperparameters = {  # lr and weight_decay as every strategy's; k is new
        "k": Hyperparameter(1, 3, type="int", default=1, source="Lee et al. 2023: the first block for input shifts")
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        first = {name for block in model.backbone.blocks()[: hp["k"]] for name in block}
        for name, p in model.backbone.named_parameters():
            p.requires_grad_(name in first)
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
