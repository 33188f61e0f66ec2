"""Strategies: one small class per file, registered by name; plugins via the `transferbench.strategies` group."""

from bench.strategies import (  # noqa: F401  (register the built-ins)
    bitfit,
    bss,
    delta,
    feature_extraction,
    finetune,
    l1,
    l1sp,
    l2,
    l2sp,
    layerwise_lr,
    lora,
    lp_ft,
    partial,
    scratch,
)
from bench.strategies.base import (
    STRATEGIES,
    Hyperparameter,
    Hyperparameters,
    Role,
    Step,
    Strategy,
    baselines,
    get_strategy,
    register_strategy,
    role_of,
    with_role,
)

__all__ = [
    "STRATEGIES",
    "Hyperparameter",
    "Hyperparameters",
    "Role",
    "Step",
    "Strategy",
    "baselines",
    "get_strategy",
    "register_strategy",
    "role_of",
    "with_role",
]
