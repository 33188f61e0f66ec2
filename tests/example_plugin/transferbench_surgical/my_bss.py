"""A strategy that penalises the batch's features: BSS as docs/adding-a-strategy.md writes it (Chen et al. 2019)."""

import torch

from bench.strategies import Hyperparameter, Hyperparameters, Step, Strategy, register_strategy


@register_strategy
class MyBSS(Strategy):
    name = "my_bss"
    description = "fine-tune with eta * sigma_min(features)^2 (Chen et al. 2019)"
    hyperparameters = {"eta": Hyperparameter(1e-4, 1e-1, scale="log", default=1e-3, source="Chen et al. 2019's eta")}

    def extra_loss(self, model, hp: Hyperparameters, step: Step) -> torch.Tensor:
        smallest = torch.linalg.svdvals(step.features)[-1]  # singular values come in descending order
        return hp["eta"] * smallest.pow(2)
