"""Statistics over finished cells: confidence intervals, paired gains over scratch with multiple-comparison
corrections, ranks, win rates, and data equivalence. Pure functions of result records, so they can be checked
on constructed numbers.

A record is what the runner stores per cell: its tags (dataset, backbone, budget, strategy, ...) and
``seeds``, a list of per-seed results with ``test_acc`` (and, from the real runner, ``confusion_matrix``).
Seeds are paired: at the same dataset, budget and seed every strategy saw the same training examples.

Accuracies are bounded, so their interval is a t-interval on the logit scale mapped back (``accuracy_ci95``);
differences of accuracies (gains) keep the plain t-interval (``mean_ci95``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

GROUP = ["dataset", "backbone", "budget"]
ALPHA = 0.05
# Where the test-set size is unknown, accuracies of exactly 0 or 1 are clamped this far inside before the logit
LOGIT_CLAMP = 1e-6


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the two ends of its plain 95 % t-interval (NaN ends for a single value).

    For unbounded quantities and differences such as gains; accuracies use ``accuracy_ci95``.
    """
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def accuracy_logits(values: Sequence[float], n_test: float | Sequence[float] | None = None) -> np.ndarray:
    """Accuracies on the logit scale, finite even at 0 and 1.

    With the test-set size n known (one for all values, or one per value), the empirical logit
    logit((a * n + 0.5) / (n + 1)) of every value; otherwise the plain logit with a clamped to
    [LOGIT_CLAMP, 1 - LOGIT_CLAMP].
    """
    a = np.asarray(values, dtype=float)
    if n_test is None:
        return special.logit(np.clip(a, LOGIT_CLAMP, 1 - LOGIT_CLAMP))
    n = np.asarray(n_test, dtype=float)
    return special.logit((a * n + 0.5) / (n + 1))


def accuracy_ci95(values: Sequence[float], n_test: float | Sequence[float] | None = None) -> tuple[float, float, float]:
    """Arithmetic mean of per-seed accuracies and a 95 % interval that stays within [0, 1].

    The t-interval of the mean of ``accuracy_logits`` mapped back with the logistic function; a plain
    t-interval of bounded values can leave [0, 1] with few seeds. NaN ends for a single value; the point
    itself when every value is the same.
    """
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0]), float(x[0])  # exactly the value (the mean can be off by float noise)
    _, low, high = mean_ci95(accuracy_logits(x, n_test))
    return mean, float(special.expit(low)), float(special.expit(high))


def n_test_examples(seed: dict[str, Any]) -> int | None:
    """The number of test examples behind a seed's accuracy: its confusion matrix's total, if recorded."""
    cm = seed.get("confusion_matrix")
    return int(np.sum(cm)) if cm else None


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate); NaN entries stay NaN and are not counted.

    With the m real p-values sorted ascending, the i-th (from 0) is multiplied by m - i, capped at 1, and made
    non-decreasing by a running maximum; rejecting where the result is below alpha controls the FWER at alpha.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    real = np.flatnonzero(~np.isnan(p))
    order = real[np.argsort(p[real], kind="stable")]
    m = len(order)
    out[order] = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN entries stay NaN and are not counted.

    With the m real p-values sorted ascending, the i-th (from 1) is multiplied by m / i, and made non-decreasing
    by a running minimum from the largest down, capped at 1 (what ``scipy.stats.false_discovery_control`` does).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    real = np.flatnonzero(~np.isnan(p))
    order = real[np.argsort(p[real], kind="stable")]
    m = len(order)
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


def n_comparisons(p_values: Sequence[float]) -> int:
    """How many comparisons a correction counts: the p-values that are not NaN."""
    return int(np.count_nonzero(~np.isnan(np.asarray(p_values, dtype=float))))


def paired_gain(treated: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Mean of the per-seed differences, its 95 % CI, and the paired t-test's two-sided p-value."""
    a, b = np.asarray(treated, dtype=float), np.asarray(baseline, dtype=float)
    gain, low, high = mean_ci95(a - b)
    # identical differences (up to float noise) leave the t statistic undefined
    p = float(stats.ttest_rel(a, b).pvalue) if len(a) > 1 and np.ptp(a - b) > 1e-12 else math.nan
    return {"gain": gain, "gain_ci_low": low, "gain_ci_high": high, "p_value": p}


def budget_per_class(record: dict[str, Any]) -> float:
    """The budget as a number: the mean real training examples per class (``all`` becomes what it was)."""
    counts = record["seeds"][0]["train_counts"].values()
    return float(np.mean(list(counts)))


def cells(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A row per cell: mean, std and 95 % CI (``accuracy_ci95``) of test accuracy over seeds, and mean macro-F1."""
    rows = []
    for r in records:
        accs = [s["test_acc"] for s in r["seeds"]]
        sizes = [n_test_examples(s) for s in r["seeds"]]
        mean, low, high = accuracy_ci95(accs, None if None in sizes else sizes)
        rows.append(
            {
                "modality": r["modality"],
                "dataset": r["dataset"],
                "backbone": r["backbone"],
                "budget": str(r["budget"]),
                "per_class": budget_per_class(r),
                "strategy": r["strategy"],
                "seeds": len(accs),
                "acc_mean": mean,
                "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                "acc_ci_low": low,
                "acc_ci_high": high,
                "macro_f1_mean": float(np.mean([s.get("test_macro_f1", math.nan) for s in r["seeds"]])),
            }
        )
    return pd.DataFrame(rows)


def gains_over_scratch(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Each strategy against scratch at the same backbone, dataset and budget, paired by seed.

    ``p_value`` is the paired t-test's, ``p_holm`` and ``p_bh`` the same adjusted by Holm (family-wise) and
    Benjamini-Hochberg (false discovery rate) across every row of the table (``n_comparisons`` of them; NaN
    p-values are no comparison). ``negative_transfer`` marks a mean gain below zero (pretrained worse than
    scratch); ``significant`` a Holm-adjusted p-value under 0.05.
    """
    key = lambda r: (r["dataset"], r["backbone"], str(r["budget"]))  # noqa: E731
    scratch = {key(r): r for r in records if r["strategy"] == "scratch"}
    rows = []
    for r in records:
        base = scratch.get(key(r))
        if r["strategy"] == "scratch" or base is None:
            continue
        by_seed = {s["seed"]: s["test_acc"] for s in base["seeds"]}
        seeds = [s for s in r["seeds"] if s["seed"] in by_seed]
        g = paired_gain([s["test_acc"] for s in seeds], [by_seed[s["seed"]] for s in seeds])
        rows.append(
            {
                "dataset": r["dataset"],
                "backbone": r["backbone"],
                "budget": str(r["budget"]),
                "strategy": r["strategy"],
                **g,
                "negative_transfer": g["gain"] < 0,
            }
        )
    if not rows:
        return pd.DataFrame(rows)
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("p_value") + 1, "p_holm", holm(out.p_value))
    out.insert(out.columns.get_loc("p_holm") + 1, "p_bh", benjamini_hochberg(out.p_value))
    out["significant"] = out.p_holm < ALPHA
    return out


def ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Each strategy's rank (1 = best mean accuracy, ties averaged) in every group, and its mean rank."""
    ranked = table.assign(rank=table.groupby(GROUP)["acc_mean"].rank(ascending=False, method="average"))
    summary = ranked.groupby("strategy")["rank"].agg(mean_rank="mean", groups="count")
    return summary.sort_values("mean_rank").reset_index()


def win_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Row strategy vs column strategy: the share of groups (where both ran) in which the row wins (ties: half)."""
    wide = table.pivot_table(index=GROUP, columns="strategy", values="acc_mean")
    names = list(wide.columns)
    out = pd.DataFrame(np.nan, index=names, columns=names)
    for a in names:
        for b in names:
            if a == b:
                continue
            both = wide[[a, b]].dropna()
            if len(both):
                out.loc[a, b] = float(((both[a] > both[b]) + 0.5 * (both[a] == both[b])).mean())
    return out


def data_equivalence(per_class: Sequence[float], scratch_acc: Sequence[float], target: float) -> tuple[str, float]:
    """How many examples per class scratch needs to reach ``target`` accuracy.

    Scratch's measured curve is interpolated linearly in log(examples per class). Returns ``("=", n)``,
    ``("<=", smallest measured)`` when scratch already reaches it there, or ``(">", largest measured)``
    when scratch never catches up within what was measured.
    """
    order = np.argsort(per_class)
    x = np.asarray(per_class, dtype=float)[order]
    y = np.asarray(scratch_acc, dtype=float)[order]
    if y[0] >= target:
        return "<=", float(x[0])
    for i in range(1, len(x)):
        if y[i] >= target:
            t = (target - y[i - 1]) / (y[i] - y[i - 1])
            return "=", float(np.exp(np.log(x[i - 1]) + t * (np.log(x[i]) - np.log(x[i - 1]))))
    return ">", float(x[-1])
