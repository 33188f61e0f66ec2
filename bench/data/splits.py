"""Budgets and stratified splits: which examples a cell trains, validates and tests on, fixed by seed.

Every strategy at the same dataset, budget and seed gets the same indices, so comparisons are paired.
Validation examples are drawn first, so at one seed the validation set does not depend on the budget and
the training set at a small budget is a subset of the one at a larger budget.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

Budget = int | str  # examples per class, or "all"


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the training pool
    val: np.ndarray  # indices into the training pool, disjoint from train
    test: np.ndarray  # indices into the test split
    train_counts: dict[int, int]  # actual training examples per class

    def describe(self) -> str:
        return f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test"


def _per_class(labels: np.ndarray, rng: np.random.Generator) -> dict[int, np.ndarray]:
    return {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}


def make_split(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    budget: Budget,
    seed: int,
    val_per_class: int,
    test_per_class: int | None = None,
    dataset: str = "dataset",
) -> Split:
    """Stratified train/val indices for ``budget`` examples per class at ``seed``, and the test indices.

    A class with fewer examples than asked keeps what it has and a warning names it; ``train_counts``
    records the real numbers. The test subset (when capped) is the same for every seed.
    """
    rng = np.random.default_rng(seed)
    train, val, counts, short = [], [], {}, []
    for c, idx in _per_class(train_labels, rng).items():
        n_val = min(val_per_class, max(len(idx) - 1, 0))
        take = idx[n_val:] if budget == "all" else idx[n_val : n_val + int(budget)]
        if budget != "all" and len(take) < int(budget):
            short.append(f"{c} ({len(take)})")
        val.append(idx[:n_val])
        train.append(take)
        counts[c] = len(take)
    if short:
        warnings.warn(
            f"{dataset}: budget {budget} per class, but these classes have fewer training examples "
            f"(class (count)): {', '.join(short)}",
            stacklevel=2,
        )
    test = np.arange(len(test_labels))
    if test_per_class is not None:
        fixed = np.random.default_rng(12345)
        test = np.concatenate([idx[:test_per_class] for idx in _per_class(test_labels, fixed).values()])
    return Split(np.sort(np.concatenate(train)), np.sort(np.concatenate(val)), np.sort(test), counts)
