"""LoRA (Hu et al., ICLR 2022) through PEFT: low-rank adapters on the backbone's supported layers.

The pretrained weights stay frozen; each targeted layer W gains a trainable update B @ A of rank r
(B starts at zero, so training starts from the pretrained function). The head trains as usual.
Targets come from the backbone family (``Backbone.lora_targets``: attention projections for
transformers, pointwise convolutions for MobileNet/EfficientNet).
"""

from __future__ import annotations

from typing import Any

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameter, Hyperparameters, Strategy, register_strategy


@register_strategy
class LoRA(Strategy):
    name = "lora"
    description = "low-rank adapters (PEFT) on the backbone's linear/conv layers, base weights frozen (Hu et al. 2022)"

    hyperparameters = {
        "lr": Hyperparameter(1e-4, 3e-2, scale="log", default=5e-4, source="Hu et al. 2022's rate for RoBERTa-base"),
        "rank": Hyperparameter(
            type="categorical", choices=(4, 8, 16), default=8, source="Hu et al. 2022's rank for RoBERTa-base"
        ),
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        from peft import LoraConfig, inject_adapter_in_model

        targets = model.backbone.lora_targets
        if not targets:
            raise ValueError(f"{type(model.backbone).__name__} declares no layers for LoRA (lora_targets)")
        config = LoraConfig(r=hp["rank"], lora_alpha=hp["rank"], target_modules=targets, lora_dropout=0.0)
        inject_adapter_in_model(config, model.backbone)
        for name, p in model.backbone.named_parameters():
            p.requires_grad_("lora_" in name)
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
