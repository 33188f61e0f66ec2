"""L2-SP (Li, Grandvalet and Davoine, ICML 2018): keep the backbone near its pretrained starting point.

Loss += alpha/2 * ||w_backbone - w0||^2 + beta/2 * ||w_head||^2, with w0 the pretrained weights. The
head is new, so it is pulled toward zero instead. Decoupled weight decay is off.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.backbones.base import Classifier
from bench.strategies import penalties
from bench.strategies.base import Hyperparameter, Hyperparameters, Step, Strategy, register_strategy


@register_strategy
class L2SP(Strategy):
    name = "l2sp"
    description = "fine-tune with alpha/2 ||w - w_pretrained||^2 on the backbone + beta/2 ||w_head||^2 (Li et al. 2018)"

    hyperparameters = {
        "weight_decay": Hyperparameter(
            type="fixed", default=0.0, source="the penalty replaces AdamW's decoupled decay"
        ),
        # Li et al. 2018's alpha 0.1 (with SGD): gradient ratio 0.017-0.025 under AdamW by the last step; alpha 10:
        # 0.18-0.26 and 20-30 points lost; alpha 1 between them
        "alpha": Hyperparameter(
            1e-2, 10.0, scale="log", default=1.0, source="between Li et al. 2018's 0.1 (weak under AdamW) and 10"
        ),
        "beta": Hyperparameter(1e-5, 1e-1, scale="log", default=0.01, source="Li et al. 2018's beta"),
    }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        self.backbone = list(model.backbone.parameters())
        self.start = [p.detach().clone() for p in self.backbone]
        return [{"params": list(model.parameters())}]

    def extra_loss(self, model: Classifier, hp: Hyperparameters, step: Step | None = None) -> torch.Tensor:
        return self._backbone_penalty(hp) + hp["beta"] / 2 * penalties.l2([model.head.weight])

    def _backbone_penalty(self, hp: Hyperparameters) -> torch.Tensor:
        return hp["alpha"] / 2 * penalties.l2_to(self.backbone, self.start)
