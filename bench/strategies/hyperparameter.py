"""One hyperparameter of a strategy, declared once: its range and scale, its type, its default and why that default."""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

import optuna

TYPES = ("float", "int", "categorical", "fixed")


@dataclass(frozen=True)
class Hyperparameter:
    """What Optuna searches for one hyperparameter, and where a study starts it.

    ``Hyperparameter(1e-4, 1e-1, scale="log", default=1e-3, source="...")`` is a float searched on a log scale;
    ``type="int"`` an integer in ``[low, high]``; ``type="categorical", choices=(4, 8, 16)`` one of the choices;
    ``type="fixed"`` the value ``default``, never tuned (``weight_decay`` where an explicit penalty replaces it).
    ``source`` says where the default comes from (a paper, a measurement), for ``bench list strategies``.
    """

    low: float | None = None
    high: float | None = None
    _: KW_ONLY
    default: Any
    source: str
    type: Literal["float", "int", "categorical", "fixed"] = "float"
    scale: Literal["log", "linear"] = "linear"
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"hyperparameter type {self.type!r}: one of {', '.join(TYPES)}")
        if self.scale not in ("log", "linear"):
            raise ValueError(f"hyperparameter scale {self.scale!r}: 'log' or 'linear'")
        if self.type == "categorical" and self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of the choices {self.choices!r}")
        if self.type in ("float", "int"):
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"a {self.type} hyperparameter needs low < high (got {self.low!r}, {self.high!r})")
            if not self.low <= self.default <= self.high:
                raise ValueError(f"default {self.default!r} is outside [{self.low!r}, {self.high!r}]")

    @property
    def tuned(self) -> bool:
        """Whether Optuna searches it (a fixed value is not, and has no place in ``defaults``)."""
        return self.type != "fixed"

    def with_default(self, default: Any, *, source: str) -> Hyperparameter:
        """The same range with another default: a subclass that starts elsewhere repeats nothing else."""
        return dataclasses.replace(self, default=default, source=source)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """The value of trial ``trial`` for the hyperparameter ``name`` (the fixed value without asking Optuna)."""
        if self.type == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.scale == "log")
        if self.type == "int":
            return trial.suggest_int(name, self.low, self.high, log=self.scale == "log")
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        return self.default
