"""Linear probe: the pretrained backbone stays frozen; the head is a logistic regression on its features.

Run as the literature runs it (Kornblith et al. 2019; CLIP): features standardised with the training split's
statistics, the multinomial logistic regression solved to convergence by L-BFGS, and its inverse L2 strength
``C`` chosen from a log grid by 5-fold stratified cross-validation over the whole budget (``bench/probe.py``,
``cv_C``, as scikit-learn's ``LogisticRegressionCV``): a sweep of every decade finds it more surely than two Optuna
draws, no label goes to a separate hold-out, and LP-FT's first phase is this very probe. Nothing is left for
Optuna to tune, and no gradient-descent loop runs at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameters, Role, Strategy, register_strategy


@register_strategy
class FeatureExtraction(Strategy):
    name = "feature_extraction"
    role = Role.PROBE
    description = "frozen pretrained backbone, converged L2 logistic regression on its features (C by cross-validation)"
    frozen_backbone = True
    holds_out = False  # C by cross-validation over the whole budget
    hyperparameters = {"lr": None, "weight_decay": None}  # nothing to tune: the probe chooses its C itself

    def before_fit(self, model: Classifier, hp: Hyperparameters, probe: Callable[[float | None], None]) -> None:
        probe(None)

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        model.requires_grad_(False)
        return []  # the probe is the whole training
