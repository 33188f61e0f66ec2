"""Fine-tuning with an L1 penalty toward zero: lambda * ||w||_1, whose gradient pushes each weight toward 0."""

from __future__ import annotations

import torch

from bench.strategies import penalties
from bench.strategies.base import Hyperparameter, Hyperparameters, register_strategy
from bench.strategies.l2 import L2


@register_strategy
class L1(L2):
    name = "l1"
    description = "fine-tune all weights with an L1 penalty lambda ||w||_1 toward zero"

    # lambda 1e-6 (its range's old midpoint): gradient ratio 1e-4; 1e-4: 0.006-0.014; 1e-3 acts (about 0.1)
    hyperparameters = {
        "lambda": Hyperparameter(
            1e-7, 1e-2, scale="log", default=1e-3, source="the smallest tried that acts (gradient ratio about 0.1)"
        )
    }

    def _penalty(self, hp: Hyperparameters) -> torch.Tensor:
        return hp["lambda"] * penalties.l1(self.params)
