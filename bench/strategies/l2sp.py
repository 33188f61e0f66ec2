"""L2-SP (Li, Grandvalet and Davoine, ICML 2018): keep the backbone near its pretrained starting point.

Loss += alpha/2 * ||w_backbone - w0||^2 + beta/2 * ||w_head||^2, with w0 the pretrained weights. The
head is new, so it is pulled toward zero instead. Decoupled weight decay is off.
"""

from __future__ import annotations

from typing import Any

import optuna
import torch

from bench.backbones.base import Classifier
from bench.strategies import penalties
from bench.strategies.base import FINE_TUNING_LR, Hyperparameters, Step, Strategy, register_strategy


@register_strategy
class L2SP(Strategy):
    name = "l2sp"
    # Li et al. 2018's alpha 0.1 (with SGD): gradient ratio 0.017-0.025 under AdamW by the last step; alpha 10:
    # 0.18-0.26 and 20-30 points lost; alpha 1 between them. beta as Li et al.
    defaults = {"lr": FINE_TUNING_LR, "alpha": 1.0, "beta": 0.01}
    description = "fine-tune with alpha/2 ||w - w_pretrained||^2 on the backbone + beta/2 ||w_head||^2 (Li et al. 2018)"

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": 0.0,
            "alpha": trial.suggest_float("alpha", 1e-2, 10.0, log=True),
            "beta": trial.suggest_float("beta", 1e-5, 1e-1, log=True),
        }

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        self.backbone = list(model.backbone.parameters())
        self.start = [p.detach().clone() for p in self.backbone]
        return [{"params": list(model.parameters())}]

    def extra_loss(self, model: Classifier, hp: Hyperparameters, step: Step | None = None) -> torch.Tensor:
        return self.backbone_penalty(hp) + hp["beta"] / 2 * penalties.l2([model.head.weight])

    def backbone_penalty(self, hp: Hyperparameters) -> torch.Tensor:
        return hp["alpha"] / 2 * penalties.l2_to(self.backbone, self.start)
