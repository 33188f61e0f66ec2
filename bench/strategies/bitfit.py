"""BitFit (Ben Zaken et al., ACL 2022): only the backbone's bias terms and the head train."""

from __future__ import annotations

from typing import Any

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameters, Strategy, register_strategy


@register_strategy
class BitFit(Strategy):
    name = "bitfit"
    description = "train only the backbone's biases and the head (Ben Zaken et al. 2022)"
    hyperparameters = {
        "lr": Strategy.hyperparameters["lr"].with_default(
            1e-3, source="bias-only training takes larger rates (Ben Zaken et al. 2022)"
        )
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        for name, p in model.backbone.named_parameters():
            p.requires_grad_(name.endswith("bias"))
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
