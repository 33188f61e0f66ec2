"""Paired comparisons from stored test predictions: a difference in accuracy with an interval over seeds *and* test
examples, and a verdict against a region of practical equivalence.

Every final seed records which test examples it got right, and every strategy of a (dataset, budget) is tested on
the same examples after training on the same examples at the same seed. So two strategies give a matrix of
per-(seed, example) differences d[s, i] = correct_a[s, i] - correct_b[s, i] (or, for one strategy's accuracy,
the correctness itself), and its mean has two sources of error: which seeds were drawn (initialisation, shuffling,
training examples) and which test examples. A crossed random-effects model, d[s, i] = mu + seed_s + example_i +
noise, gives its variance from the two-way table's mean squares (Searle, Casella & McCulloch 1992):

    Var(mean) = sigma_seed^2 / S + sigma_example^2 / N + sigma_noise^2 / (S N)

with Satterthwaite's degrees of freedom, so that with 3 seeds the seed term is judged by a t with about 2 degrees
of freedom and with 2,000 test examples the example term by a normal. ``benchmarks/calibration.py`` measures this
interval, and a hierarchical percentile bootstrap over seeds then examples (Bouthillier et al. 2021), on
simulated strategies with known answers: the bootstrap declares equal strategies different too often at 3 seeds.

A verdict compares the interval with a region of practical equivalence of +-rope around zero (Kruschke 2018;
Benavoli et al. 2017): ``better`` or ``worse`` when the interval lies beyond it, ``equivalent`` when it lies
inside it, ``undecided`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
Run = tuple[str, int]  # (backbone, seed): one final run of a strategy in a (dataset, budget)


@dataclass(frozen=True)
class Components:
    """The variance components of a mean over S seeds and N test examples (per unit: one seed, one example)."""

    seed: float
    example: float
    noise: float

    def variance(self, seeds: int, examples: int) -> float:
        return self.seed / seeds + self.example / examples + self.noise / (seeds * examples)

    def dof(self, seeds: int, examples: int) -> float:
        """Satterthwaite's degrees of freedom of ``variance`` from the mean squares it is built of."""
        if seeds < 2:
            return math.nan
        # variance = MS_seeds / (S N) + MS_examples / (S N) - MS_noise / (S N), each mean square with its own dof
        ms_seeds = examples * self.seed + self.noise
        ms_examples = seeds * self.example + self.noise
        terms = [(ms_seeds, seeds - 1), (ms_examples, examples - 1), (-self.noise, (seeds - 1) * (examples - 1))]
        total = sum(t for t, _ in terms)
        spread = sum(t * t / d for t, d in terms if d > 0)
        return total * total / spread if spread > 0 else math.inf


def components(x: np.ndarray) -> Components:
    """The variance components of a (seeds x examples) table, by the method of moments (negative ones are 0)."""
    s, n = x.shape
    row, col, grand = x.mean(axis=1), x.mean(axis=0), float(x.mean())
    noise = 0.0
    if s > 1 and n > 1:
        residual = x - row[:, None] - col[None, :] + grand
        noise = float(np.sum(residual**2)) / ((s - 1) * (n - 1))
    ms_seeds = n * float(row.var(ddof=1)) if s > 1 else 0.0
    ms_examples = s * float(col.var(ddof=1)) if n > 1 else 0.0
    return Components(max(ms_seeds - noise, 0.0) / n, max(ms_examples - noise, 0.0) / s, noise)


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds and test examples with its interval."""

    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    n_test: int
    parts: Components

    def at(self, seeds: int, confidence: float) -> tuple[float, float]:
        """The interval this estimate would have with ``seeds`` seeds, if the mean and components stayed."""
        return _interval(self.mean, self.parts, seeds, self.n_test, confidence)


def _interval(mean: float, parts: Components, seeds: int, examples: int, confidence: float) -> tuple[float, float]:
    if seeds < 2:
        return -math.inf, math.inf  # one seed says nothing of the spread between seeds
    half = float(stats.t.ppf(0.5 + confidence / 2, parts.dof(seeds, examples))) * math.sqrt(
        parts.variance(seeds, examples)
    )
    return mean - half, mean + half


def estimate(x: np.ndarray, confidence: float) -> Estimate:
    """The mean of a (seeds x examples) table and its two-sided interval at ``confidence``."""
    s, n = x.shape
    parts = components(x)
    mean = float(x.mean())
    return Estimate(mean, *_interval(mean, parts, s, n, confidence), s, n, parts)


def verdict(low: float, high: float, rope: float) -> str:
    """``better``/``worse`` when [low, high] lies above +rope / below -rope, ``equivalent`` inside [-rope, rope]."""
    if low > rope:
        return BETTER
    if high < -rope:
        return WORSE
    if -rope <= low and high <= rope:
        return EQUIVALENT
    return UNDECIDED


NO_PREDICTIONS = -1  # the one pseudo-example of a run that kept no predictions: its accuracy


def correct(records: list[dict[str, Any]]) -> dict[Run, dict[int, float]]:
    """Per final run (backbone, seed) of one strategy's cells: test index -> 1 if predicted right, else 0.

    A run of an earlier version that kept no predictions gives its accuracy as one pseudo-example
    (``NO_PREDICTIONS``): its comparisons then count the seeds' spread only (a paired t-interval)."""
    out: dict[Run, dict[int, float]] = {}
    for r in records:
        for s in r["seeds"]:
            p = s.get("predictions")
            if p is None:
                out[(r["backbone"], s["seed"])] = {NO_PREDICTIONS: float(s["test_acc"])}
                continue
            right = (np.asarray(p["predicted"]) == np.asarray(p["true"])).astype(float)
            out[(r["backbone"], s["seed"])] = dict(zip(p["test_index"], right.tolist(), strict=True))
    return out


def table(runs: dict[Run, dict[int, float]], keys: list[Run], examples: list[int]) -> np.ndarray:
    return np.array([[runs[k][i] for i in examples] for k in keys], dtype=float)


def shared(a: dict[Run, dict[int, float]], b: dict[Run, dict[int, float]]) -> tuple[list[Run], list[int]]:
    """The runs both have and the test examples all of those runs were tested on, in order."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return [], []
    examples = set.intersection(*(set(a[k]) & set(b[k]) for k in keys))
    return keys, sorted(examples)


@dataclass(frozen=True)
class Difference:
    """Strategy a minus strategy b, paired by run and test example."""

    estimate: Estimate
    p_improve: float  # share of (run of a, run of b) pairs in which a's accuracy is higher (ties count half)

    @property
    def diff(self) -> float:
        return self.estimate.mean

    def verdict(self, rope: float) -> str:
        return verdict(self.estimate.ci_low, self.estimate.ci_high, rope)

    def seeds_to_decide(self, most: int, rope: float, confidence: float) -> int | None:
        """The fewest seeds, more than now and at most ``most``, at which the interval would decide the verdict
        if the difference and its variance components stayed as measured; None when none would."""
        for seeds in range(self.estimate.seeds + 1, most + 1):
            if verdict(*self.estimate.at(seeds, confidence), rope) != UNDECIDED:
                return seeds
        return None


def difference(a: dict[Run, dict[int, float]], b: dict[Run, dict[int, float]], confidence: float) -> Difference | None:
    """a minus b over the runs and test examples both have (None when they share none)."""
    keys, examples = shared(a, b)
    if not examples:
        return None
    return difference_of(table(a, keys, examples), table(b, keys, examples), confidence)


def difference_of(ta: np.ndarray, tb: np.ndarray, confidence: float) -> Difference:
    """a minus b from their (runs x examples) tables, paired row by row and column by column."""
    acc_a, acc_b = ta.mean(axis=1), tb.mean(axis=1)
    # rliable's probability of improvement: the Mann-Whitney U statistic over the two sets of run accuracies
    u = stats.mannwhitneyu(acc_a, acc_b).statistic
    return Difference(estimate(ta - tb, confidence), float(u) / (len(acc_a) * len(acc_b)))


def accuracy(runs: dict[Run, dict[int, float]], confidence: float) -> tuple[float, float, float] | None:
    """Mean accuracy over runs and test examples, with an interval that counts both and stays inside [0, 1]: the
    interval is taken on the logit scale (delta method) and mapped back. None without predictions."""
    keys, examples = shared(runs, runs)
    if not examples:
        return None
    x = table(runs, keys, examples)
    est = estimate(x, confidence)
    if not math.isfinite(est.ci_low):
        return est.mean, math.nan, math.nan
    # kept off 0 and 1 by half an example, as the empirical logit does (by a hair for accuracies without examples)
    margin = 0.5 / (x.size + 1) if examples != [NO_PREDICTIONS] else 1e-6
    p = min(max(est.mean, margin), 1 - margin)
    half = (est.ci_high - est.mean) / (p * (1 - p))
    centre = float(special.logit(p))
    return est.mean, float(special.expit(centre - half)), float(special.expit(centre + half))
