"""Strategies: one small class per file, registered by name; plugins via the `transferbench.strategies` group."""

from bench.strategies import feature_extraction, finetune, scratch  # noqa: F401  (register the built-ins)
from bench.strategies.base import STRATEGIES, Hyperparameters, Strategy, get_strategy, register_strategy

__all__ = ["STRATEGIES", "Hyperparameters", "Strategy", "get_strategy", "register_strategy"]
