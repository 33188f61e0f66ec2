"""Linear probe: the pretrained backbone stays frozen; the head is a logistic regression on its features.

Run as the literature runs it (Kornblith et al. 2019; CLIP): features standardised with the training split's
statistics, the multinomial logistic regression solved to convergence by L-BFGS, and only its inverse L2
strength ``C`` tuned by Optuna on a log scale. No gradient-descent loop runs at all (``bench/probe.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from bench.backbones.base import Classifier
from bench.probe import C_RANGE
from bench.strategies.base import Hyperparameters, Strategy, register_strategy


@register_strategy
class FeatureExtraction(Strategy):
    name = "feature_extraction"
    description = "frozen pretrained backbone, converged L2 logistic regression on its features (C tuned)"
    frozen_backbone = True
    defaults = {"C": 1.0}  # scikit-learn's LogisticRegression default

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {"C": trial.suggest_float("C", *C_RANGE, log=True)}

    def before_fit(self, model: Classifier, hp: Hyperparameters, probe: Callable[[float], None]) -> None:
        probe(hp["C"])

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        model.requires_grad_(False)
        return []  # the probe is the whole training
