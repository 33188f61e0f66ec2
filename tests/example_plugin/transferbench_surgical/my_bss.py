"""A strategy that penalises the batch's features: BSS as docs/adding-a-strategy.md writes it (Chen et al. 2019)."""

import optuna
import torch

from bench.strategies import Hyperparameters, Step, Strategy, register_strategy


@register_strategy
class MyBSS(Strategy):
    name = "my_bss"
    description = "fine-tune with eta * sigma_min(features)^2 (Chen et al. 2019)"

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
            "eta": trial.suggest_float("eta", 1e-4, 1e-1, log=True),
        }

    def extra_loss(self, model, hp: Hyperparameters, step: Step) -> torch.Tensor:
        smallest = torch.linalg.svdvals(step.features)[-1]  # singular values come in descending order
        return hp["eta"] * smallest.pow(2)
