"""L1-SP: the L1 counterpart of L2-SP. Loss += alpha * ||w_backbone - w0||_1 + beta/2 * ||w_head||^2.

Where L2-SP lets every weight drift a little, the L1 distance favours leaving most weights exactly at
their pretrained values and moving a few (Li et al. 2018 compare both).
"""

from __future__ import annotations

import torch

from bench.strategies import penalties
from bench.strategies.base import Hyperparameter, Hyperparameters, register_strategy
from bench.strategies.l2sp import L2SP


@register_strategy
class L1SP(L2SP):
    name = "l1sp"
    description = "fine-tune with alpha ||w - w_pretrained||_1 on the backbone + beta/2 ||w_head||^2"

    # alpha 1e-5 (its range's old midpoint): gradient ratio 0.002 by the last step; 1e-3: 0.11, it acts. beta as L2-SP's
    hyperparameters = {
        "alpha": Hyperparameter(
            1e-6, 1e-2, scale="log", default=1e-3, source="the smallest tried that acts (gradient ratio 0.11)"
        )
    }

    def _backbone_penalty(self, hp: Hyperparameters) -> torch.Tensor:
        return hp["alpha"] * penalties.l1_to(self.backbone, self.start)
