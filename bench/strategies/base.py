"""Strategy contract: what trains, how, with which extra loss and search space. Never its own loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import optuna
import torch

from bench.backbones.base import Classifier
from bench.registry import Registry

Hyperparameters = dict[str, Any]


class Strategy:
    """Base class of every strategy. Subclass it, set ``name`` and ``description``, override what differs.

    - ``search_space``: the Optuna suggestions this strategy tunes (the loop reads ``lr`` and ``weight_decay``).
    - ``before_fit``: an optional phase before training, e.g. LP-FT's linear probe: ``probe(C)`` fits the head
      as a converged L2 logistic regression on the frozen pretrained backbone's features.
    - ``param_groups``: freeze what must not train and return the optimizer's parameter groups. Called once
      per training run on a freshly built model, before any ``extra_loss``: a strategy may keep what it
      needs from the starting weights (L2-SP keeps them as its reference). No parameters: the loop does not
      run (``feature_extraction``, whose probe is the whole training).
    - ``extra_loss``: a term added to the cross-entropy at every step (e.g. a penalty on the weights).
    - ``pretrained``: start from pretrained weights (``scratch`` does not).
    - ``frozen_backbone``: the backbone never trains, so the head works on cached features (probe and loop).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    pretrained: ClassVar[bool] = True
    frozen_backbone: ClassVar[bool] = False

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        }

    def before_fit(self, model: Classifier, hp: Hyperparameters, probe: Callable[[float], None]) -> None:
        """``probe(C)`` fits the head alone on cached features of the frozen backbone, to convergence."""

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def extra_loss(self, model: Classifier, hp: Hyperparameters) -> torch.Tensor | None:
        return None


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", entry_point_group="transferbench.strategies")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its ``name`` in experiment files."""
    return STRATEGIES.register(cls.name, cls)


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)()
