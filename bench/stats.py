"""Statistics over finished cells: confidence intervals, paired gains over scratch, ranks, win rates,
and data equivalence. Pure functions of result records, so they can be checked on constructed numbers.

A record is what the runner stores per cell: its tags (dataset, backbone, budget, strategy, ...) and
``seeds``, a list of per-seed results with ``test_acc``. Seeds are paired: at the same dataset, budget
and seed every strategy saw the same training examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

GROUP = ["dataset", "backbone", "budget"]


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the two ends of its 95 % t-interval (NaN ends for a single value)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


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
    """A row per cell: mean, std and 95 % CI of test accuracy over seeds, and mean macro-F1."""
    rows = []
    for r in records:
        accs = [s["test_acc"] for s in r["seeds"]]
        mean, low, high = mean_ci95(accs)
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

    ``negative_transfer`` marks a mean gain below zero (pretrained worse than scratch); ``significant``
    a paired t-test p-value under 0.05.
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
                "significant": g["p_value"] < 0.05,
            }
        )
    return pd.DataFrame(rows)


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
