"""Strategy contract: what trains, how, with which extra loss and search space. Never its own loop."""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib.metadata
import inspect
import sys
from collections.abc import Callable, Collection
from typing import Any, ClassVar

import optuna
import torch

from bench.backbones.base import Classifier
from bench.loop import Step
from bench.registry import Registry, did_you_mean
from bench.strategies.hyperparameter import Hyperparameter

Hyperparameters = dict[str, Any]

# The AdamW rate every strategy that fine-tunes the backbone from a new head starts its study from. In a bare loop
# (benchmarks/finetune_recipes.py, docs/results.md "The fine-tuning recipe, measured": CIFAR-10, MobileNetV2 at 64 px,
# cosine decay, BatchNorm statistics in train mode) 3e-4 was the best of 1e-4, 3e-4 and 1e-3 at 80 steps. Through the
# harness at the default's schedules (early stopping on validation loss), 6e-4 tests better on CIFAR-10: 63.6 against
# 60.8 % at 100 per class (200 steps) and 46.5 against 45.1 % at 20 (40 steps), means of seeds 0-2 (2026-12-07). The
# search then tries 1e-5 to 1e-2.
FINE_TUNING_LR = 6e-4


class Role(enum.Enum):
    """What a strategy is to the analysis. Statistics, report, plots and scores ask for a role, never a name: a
    researcher who brings a baseline of their own declares its role and every comparison follows."""

    STRATEGY = "strategy"  # an ordinary strategy: compared with the best, with scratch and with the probe
    SCRATCH = "from scratch"  # the baseline without pretraining: gains over it measure what pretraining buys
    PROBE = "linear probe"  # the baseline on frozen features: fine-tuning has to beat it


def _defaults(hyperparameters: dict[str, Hyperparameter | None]) -> Hyperparameters:
    """The defaults of the tuned hyperparameters (a fixed value is no suggestion, so it has no default to enqueue)."""
    return {name: h.default for name, h in hyperparameters.items() if h is not None and h.tuned}


def _merged(
    cls: type, inherited: dict[str, Hyperparameter | None], own: dict[str, Hyperparameter | None]
) -> dict[str, Hyperparameter | None]:
    """``inherited`` with ``own`` applied: an entry replaces the inherited one of its name in its place (or comes
    last when new), ``None`` removes one."""
    merged = dict(inherited)
    for name, h in own.items():
        if h is not None:
            merged[name] = h
        elif merged.pop(name, None) is None:
            raise TypeError(f"{cls.__qualname__}.hyperparameters removes {name!r}, which it does not inherit")
    return merged


class Strategy:
    """Base class of every strategy. Subclass it, set ``name`` and ``description``, override what differs.

    - ``hyperparameters``: what Optuna tunes, by name, each a ``Hyperparameter`` (range, scale, type, default and
      the default's source). A subclass lists only what it adds or changes: an entry replaces the inherited one
      of its name in its place, ``None`` removes one. ``Strategy.hyperparameters["lr"].with_default(1e-3,
      source=...)`` changes only a default. The loop reads ``lr`` and ``weight_decay``: a strategy that replaces
      decoupled decay declares ``weight_decay`` fixed (``Hyperparameter(type="fixed", default=0.0, ...)``).
    - ``search_space``: the Optuna suggestions, in the order of ``hyperparameters``; override it for a space
      the declaration cannot say (one hyperparameter conditional on another).
    - ``defaults``: the tuned hyperparameters' defaults, from the declaration: the setting its paper or common
      practice starts from; with ``tuning.first_trial: defaults`` a cell's study tries it first, then searches.
    - ``before_fit``: an optional phase before training, e.g. LP-FT's linear probe: ``probe(C)`` fits the head
      as a converged L2 logistic regression on the frozen pretrained backbone's features (``probe(None)``
      chooses ``C`` on the validation split).
    - ``param_groups``: freeze what must not train and return the optimizer's parameter groups. Called once
      per training run on a freshly built model that is already on its device, after ``before_fit`` and
      before any ``extra_loss``: a strategy may keep what it needs from the starting weights (L2-SP keeps them
      as its reference; DELTA a frozen copy of the starting backbone, on the same device). No parameters: the
      loop does not run (``feature_extraction``, whose probe is the whole training).
    - ``extra_loss(model, hp, step)``: a term added to the cross-entropy at every step, after the forward pass
      and before the backward pass. ``step`` (a ``Step``) holds the batch, the backbone's features of it (in
      the graph), the logits, the labels and the step number: enough for weight penalties (L2-SP) and for
      activation penalties (BSS, DELTA). An ``extra_loss(model, hp)`` of two arguments still works.
    - ``role``: ``Role.SCRATCH`` or ``Role.PROBE`` for the baselines the analysis compares every strategy with;
      ``Role.STRATEGY`` (the default) for the rest. An experiment holds at most one strategy of each baseline role.
    - ``pretrained``: start from pretrained weights (``scratch`` does not).
    - ``frozen_backbone``: the backbone never trains, so the head works on cached features (probe and loop).
    - ``step_scale``: runs take this many times the configured steps (and cap): ``scratch`` starts from random
      weights and needs more. Early stopping still ends each run at its best validation.
    - ``holds_out``: validation examples come out of the budget for this strategy (to choose Optuna's trial and
      the kept step); ``False`` for a strategy that chooses by cross-validation inside its training examples (the
      linear probe), which then trains on the whole budget.
    - ``batchnorm``: "train" or "frozen" to override ``training.batchnorm`` for this strategy (LP-FT keeps the
      statistics its probe was fit under); None follows the experiment.
    - ``seed_offset``: added to the seed for initialisation and shuffling, never for the split: a replicate of a
      strategy under another name trains on the same examples with other random draws (an A/A run).

    Each training run (every trial and final seed) gets a fresh instance, so state kept in ``param_groups``
    never outlives its run. Any other public attribute is a ``TypeError`` when the class is created (a misspelt
    hook would otherwise never run): a subclass's helpers start with an underscore.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    role: ClassVar[Role] = Role.STRATEGY
    pretrained: ClassVar[bool] = True
    frozen_backbone: ClassVar[bool] = False
    step_scale: ClassVar[int] = 1
    holds_out: ClassVar[bool] = True
    batchnorm: ClassVar[str | None] = None
    seed_offset: ClassVar[int] = 0
    hyperparameters: ClassVar[dict[str, Hyperparameter | None]] = {
        "lr": Hyperparameter(
            1e-5, 1e-2, scale="log", default=FINE_TUNING_LR, source="measured through the harness (FINE_TUNING_LR)"
        ),
        "weight_decay": Hyperparameter(
            1e-6, 1e-1, scale="log", default=1e-4, source="AdamW's common fine-tuning decay"
        ),
    }
    defaults: ClassVar[Hyperparameters] = _defaults(hyperparameters)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_hooks(cls)
        if "hyperparameters" in cls.__dict__:
            cls.hyperparameters = _merged(cls, super(cls, cls).hyperparameters, cls.__dict__["hyperparameters"])
            if "defaults" not in cls.__dict__:  # a class that still writes its own defaults keeps them
                cls.defaults = _defaults(cls.hyperparameters)

    def search_space(self, trial: optuna.Trial) -> Hyperparameters:
        """One suggestion per tuned hyperparameter, in the declaration's order; a fixed one's value as it is."""
        return {name: h.suggest(trial, name) for name, h in self.hyperparameters.items() if h is not None}

    def before_fit(self, model: Classifier, hp: Hyperparameters, probe: Callable[[float | None], None]) -> None:
        """``probe(C)`` fits the head alone on cached features of the frozen backbone, to convergence (``C=None``:
        the ``C`` of a grid with the best validation accuracy)."""

    def param_groups(self, model: Classifier, hp: Hyperparameters) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def extra_loss(self, model: Classifier, hp: Hyperparameters, step: Step) -> torch.Tensor | None:
        return None


def _check_hooks(cls: type[Strategy]) -> None:
    """A public attribute the base class does not define is a misspelt hook (it would silently never run) or a
    helper that should be private: either way a ``TypeError`` naming the closest hook."""
    hooks = sorted(name for name in {*vars(Strategy), *Strategy.__annotations__} if not name.startswith("_"))
    for name in cls.__dict__:
        if not name.startswith("_") and name not in hooks:
            raise TypeError(
                f"strategy class {cls.__qualname__} defines {name!r}, which is no Strategy hook"
                f"{did_you_mean(name, hooks)}; hooks: {', '.join(hooks)}. Name a helper with a leading underscore."
            )


@functools.cache  # every cell key asks: the sources are read and digested once per class and process
def implementation(cls: type[Strategy]) -> dict[str, str]:
    """What produced a strategy's results, for cell keys: the distribution that ships it, its version, and a digest
    of the source of every module its class and base classes are defined in (the contract in this file aside: the
    project's version covers it). Changing a strategy's code, or its plugin's version, reruns its cells only."""
    digest = hashlib.sha256()
    for name in sorted({c.__module__ for c in cls.__mro__} - {__name__, "builtins"}):
        try:
            digest.update(inspect.getsource(sys.modules[name]).encode())
        except (OSError, TypeError, KeyError):  # no source to read (a compiled module): its version decides
            digest.update(name.encode())
    dist = _distributions().get(cls.__module__.split(".")[0], [None])[0]
    version = importlib.metadata.version(dist) if dist else "unknown"
    return {"distribution": dist or cls.__module__, "version": version, "source": digest.hexdigest()[:16]}


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions that provide it (read once: it scans every distribution)."""
    return importlib.metadata.packages_distributions()


def penalty(strategy: Strategy, model: Classifier, hp: Hyperparameters) -> Callable[[Step], torch.Tensor | None]:
    """The training loop's ``extra_loss(step)`` for ``strategy``, whether its ``extra_loss`` takes the step or
    (as before the step was passed) only the model and the hyperparameters."""
    if len(inspect.signature(strategy.extra_loss).parameters) >= 3:
        return lambda step: strategy.extra_loss(model, hp, step)
    return lambda step: strategy.extra_loss(model, hp)  # type: ignore[call-arg]


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", entry_point_group="transferbench.strategies")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its ``name`` in experiment files."""
    return STRATEGIES.register(cls.name, cls)


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)()


def role_of(name: str) -> Role:
    """The role of the strategy called ``name``; results of a strategy no longer installed count as ordinary."""
    return STRATEGIES.get(name).role if name in STRATEGIES else Role.STRATEGY


def with_role(role: Role) -> str:
    """The registered strategy playing ``role`` (a baseline role has one; a plugin that brings another is named in
    the error, so the experiment can choose)."""
    names = [name for name, cls in STRATEGIES if cls.role is role]
    if len(names) != 1:
        raise ValueError(f"{len(names)} registered strategies have the role {role.value!r}: {', '.join(names)}")
    return names[0]


def baselines(names: Collection[str]) -> dict[Role, str]:
    """The baseline roles among the strategies ``names`` (of one experiment or one result set), each with the name
    playing it. Two strategies claiming one baseline role leave the comparisons undefined: a ``ValueError`` says so."""
    found: dict[Role, str] = {}
    for name in sorted(names):
        role = role_of(name)
        if role is Role.STRATEGY:
            continue
        if role in found:
            raise ValueError(
                f"strategies '{found[role]}' and '{name}' both have the role {role.value!r}: keep one of them in the "
                "experiment's strategies (every strategy is compared with the one baseline of each role)"
            )
        found[role] = name
    return found
