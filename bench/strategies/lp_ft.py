"""LP-FT (Kumar et al., ICLR 2022): linear probe first, then fine-tune everything from the probed head.

Starting the fine-tune from a trained head instead of a random one keeps early gradients from distorting
the pretrained features. The probe phase is the converged logistic regression of ``feature_extraction``
(its ``C`` tuned alongside the fine-tuning hyperparameters); then the usual loop fine-tunes the whole model.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from bench.backbones.base import Classifier
from bench.probe import C_RANGE
from bench.strategies.base import Hyperparameters, Strategy, register_strategy


@register_strategy
class LPFT(Strategy):
    name = "lp_ft"
    description = "linear probe on frozen features, then fine-tune all weights from the probed head (Kumar et al. 2022)"
    # the probe's C as feature_extraction's; fine-tuning from a trained head at a smaller rate than plain fine-tuning
    defaults = {"probe_C": 1.0, "lr": 3e-5, "weight_decay": 1e-4}

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "probe_C": trial.suggest_float("probe_C", *C_RANGE, log=True),
            "lr": trial.suggest_float("lr", 1e-6, 1e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        }

    def before_fit(self, model: Classifier, hp: Hyperparameters, probe: Callable[[float], None]) -> None:
        probe(hp["probe_C"])
