"""Budgets and stratified splits: which examples a cell trains, validates and tests on, fixed by seed.

A budget of k per class is every labelled example a cell sees: whatever it validates on comes out of those k
(``holdout_per_class``), as VTAB-1k takes its 200 validation examples out of its 1,000 and as Perez, Kiela and Cho
(2021, "True Few-Shot Learning") ask of few-shot results. Validation on top of the budget is an explicit option
(``extra_val_per_class``) that the report then names in its first lines.

Every strategy at the same dataset, budget and seed gets the same indices, so comparisons are paired, and at one
seed the labelled examples of a small budget are a subset of those of a larger one. The test split (or its fixed
subset) is the same for every seed and budget and never touches the training pool.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

Budget = int | str  # examples per class, or "all"

VAL_FRACTION = 0.2  # of each class's budget held out for validation: VTAB-1k's 800/200
MIN_VAL_PER_CLASS = 2  # a hold-out of fewer per class is none: choices fall back to a fixed, documented schedule


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the training pool
    val: np.ndarray  # indices into the training pool, disjoint from train (empty: no hold-out)
    test: np.ndarray  # indices into the test split
    train_counts: dict[int, int]  # actual training examples per class

    def describe(self) -> str:
        return f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test"

    def labelled(self) -> int:
        """Labelled examples the split touches: training and validation together."""
        return len(self.train) + len(self.val)


def holdout_per_class(budget: int, fraction: float = VAL_FRACTION, minimum: int = MIN_VAL_PER_CLASS) -> int:
    """Validation examples per class taken out of a budget of ``budget`` per class: ``fraction`` of it (rounded
    down), or none when that is fewer than ``minimum`` (one or two examples per class would pick trials and steps
    by noise). 5 per class -> 0, 10 -> 2, 20 -> 4, 100 -> 20."""
    n = math.floor(fraction * budget + 1e-9)
    return n if n >= minimum else 0


def _per_class(labels: np.ndarray, rng: np.random.Generator) -> dict[int, np.ndarray]:
    return {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}


def make_split(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    budget: Budget,
    seed: int,
    holds_out: bool = True,
    extra_val_per_class: int | None = None,
    test_per_class: int | None = None,
    dataset: str = "dataset",
    val_fraction: float = VAL_FRACTION,
    min_val_per_class: int = MIN_VAL_PER_CLASS,
) -> Split:
    """Stratified train/val indices for ``budget`` labelled examples per class at ``seed``, and the test indices.

    Each class's examples are shuffled by ``seed``; its budget is the first ``budget`` of them (``"all"``: every
    one). With ``holds_out`` the validation examples are the first ``holdout_per_class`` of the budget and the rest
    train; without (a probe that chooses by cross-validation inside its training examples) all of them train.
    ``extra_val_per_class`` instead draws that many validation examples per class *outside* the budget, before it.
    A class with fewer examples than asked keeps what it has and a warning names it; ``train_counts`` records the
    real numbers. The test subset (when capped) is the same for every seed; see ``test_subset``.
    """
    rng = np.random.default_rng(seed)
    train, val, counts, short = [], [], {}, []
    for c, idx in _per_class(train_labels, rng).items():
        if extra_val_per_class is not None:
            extra = min(extra_val_per_class, max(len(idx) - 1, 0))
            held, idx = idx[:extra], idx[extra:]
        labelled = idx if budget == "all" else idx[: int(budget)]
        if budget != "all" and len(labelled) < int(budget):
            short.append(f"{c} ({len(labelled)})")
        if extra_val_per_class is None:
            n_val = holdout_per_class(len(labelled), val_fraction, min_val_per_class) if holds_out else 0
            held, labelled = labelled[:n_val], labelled[n_val:]
        val.append(held)
        train.append(labelled)
        counts[c] = len(labelled)
    if short:
        warnings.warn(
            f"{dataset}: budget {budget} per class, but these classes have fewer training examples "
            f"(class (count)): {', '.join(short)}",
            stacklevel=2,
        )
    test = test_subset(test_labels, test_per_class)
    return Split(np.sort(np.concatenate(train)), np.sort(np.concatenate(val)).astype(np.int64), test, counts)


def test_subset(test_labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """The test indices: the whole test split, or with ``per_class`` a fixed stratified subset with the same number
    of examples in every class (``per_class``, or the smallest class's count when that is smaller), so its accuracy
    is also its balanced accuracy. Drawn with a fixed seed: the same for every run seed and budget."""
    if per_class is None:
        return np.arange(len(test_labels))
    by_class = _per_class(test_labels, np.random.default_rng(12345))
    n = min(per_class, *(len(idx) for idx in by_class.values()))
    return np.sort(np.concatenate([idx[:n] for idx in by_class.values()]))
