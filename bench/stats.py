"""Statistics over finished cells: confidence intervals, paired gains over scratch with multiple-comparison
corrections, ranks, win rates, the Friedman test with Nemenyi critical differences, per-dataset verdicts,
rank correlations of transferability scores with realised accuracy, and data equivalence. Pure functions of
result records, so they can be checked on constructed numbers.

A record is what the runner stores per cell: its tags (dataset, backbone, budget, strategy, ...) and
``seeds``, a list of per-seed results with ``test_acc`` (and, from the real runner, ``confusion_matrix``).
Seeds are paired: at the same dataset, budget and seed every strategy saw the same training examples.

Accuracies are bounded, so their interval is a t-interval on the logit scale mapped back (``accuracy_ci95``);
differences of accuracies (gains) keep the plain t-interval (``mean_ci95``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

GROUP = ["dataset", "backbone", "budget"]
ALPHA = 0.05
# Where the test-set size is unknown, accuracies of exactly 0 or 1 are clamped this far inside before the logit
LOGIT_CLAMP = 1e-6
# Permutation tests enumerate every permutation up to this many, else draw PERMUTATIONS random ones
EXACT_PERMUTATIONS = 5040  # 7!
PERMUTATIONS = 2000
PERMUTATION_SEED = 0
FEW_BACKBONES = "fewer than 3 backbones: no conclusion"


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
    """The budget as a number: the labelled examples per class the cell used, training and validation together
    (fewer than the budget where a class had fewer; ``all`` becomes what it was), never more than the budget (a
    validation set drawn outside it is not part of it)."""
    seed = record["seeds"][0]
    counts = list(seed["train_counts"].values())
    labelled = (sum(counts) + seed.get("n_val", 0)) / len(counts)
    budget = str(record["budget"])
    return min(float(budget), labelled) if budget != "all" else float(labelled)


def _predictions(record: dict[str, Any]) -> dict[int, tuple] | None:
    """A cell's per-example test predictions by seed, or None when a seed recorded none (an older version)."""
    out = {}
    for s in record["seeds"]:
        if "predictions" not in s:
            return None
        p = s["predictions"]
        out[s["seed"]] = (tuple(p["test_index"]), tuple(p["predicted"]))
    return out


def identical_to(records: list[dict[str, Any]]) -> dict[str, str]:
    """Cells whose test predictions equal another strategy's at every seed of the same dataset, backbone and budget:
    ``{cell_key: the strategy it copies}``, the first such strategy in record order (the experiment's order). Two
    such strategies are one result, whatever their names; cells without stored predictions are never flagged."""
    first: dict[tuple, list[tuple[str, dict]]] = {}
    copies = {}
    for r in records:
        preds = _predictions(r)
        if preds is None:
            continue
        group = (r["dataset"], r["backbone"], str(r["budget"]))
        for name, other in first.get(group, []):
            if other == preds:
                copies[r["cell_key"]] = name
                break
        else:
            first.setdefault(group, []).append((r["strategy"], preds))
    return copies


def distinct(records: list[dict[str, Any]], copies: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The records without the cells that copy another strategy's predictions: the keys in ``copies``, by default
    ``identical_to(records)``."""
    copies = identical_to(records) if copies is None else copies
    return [r for r in records if r.get("cell_key") not in copies]


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


PROBE = "feature_extraction"
BELOW_PROBE_MARGIN = 0.05  # how far under the linear probe a strategy that trains more may end before it is flagged


def below_probe(records: list[dict[str, Any]], margin: float = BELOW_PROBE_MARGIN) -> pd.DataFrame:
    """Strategies whose mean test accuracy ends more than ``margin`` below the linear probe (``feature_extraction``)
    at the same backbone, dataset and budget, paired by seed, with what their runs measured to explain it.

    Each row has the paired gap and its 95 % CI, both sides' median validation accuracy, the median optimiser steps
    and step of the kept weights, and ``cause``: ``"still improving"`` when the runs kept their last step (the step
    cap cut them short), ``"validation misled"`` when the kept weights validated at least as well as the probe (the
    small validation set chose weights that do not generalise), ``"fixed schedule"`` when the budget left no hold-out
    (the runs kept their last weights), else ``"fell after step b"``: training moved away from the probe's solution
    faster than it improved on it, and early stopping kept the best point it reached; ``"not recorded"`` for runs
    of a version that kept no steps.
    """
    key = lambda r: (r["dataset"], r["backbone"], str(r["budget"]))  # noqa: E731
    probes = {key(r): r for r in records if r["strategy"] == PROBE}
    rows = []
    for r in records:
        probe = probes.get(key(r))
        if r["strategy"] in (PROBE, "scratch") or probe is None:
            continue
        by_seed = {s["seed"]: s for s in probe["seeds"]}
        seeds = [s for s in r["seeds"] if s["seed"] in by_seed]
        gap = paired_gain([s["test_acc"] for s in seeds], [by_seed[s["seed"]]["test_acc"] for s in seeds])
        if not seeds or gap["gain"] >= -margin:
            continue
        median = lambda k, ss=seeds: float(np.median([s.get(k, math.nan) for s in ss]))  # noqa: E731
        val, probe_val = median("val_acc"), median("val_acc", [by_seed[s["seed"]] for s in seeds])
        steps, kept = median("steps"), median("best_step")
        if math.isnan(steps) or math.isnan(kept):
            cause = "not recorded"  # runs of an earlier version kept no steps
        elif math.isnan(val):
            cause = "fixed schedule"  # no hold-out at this budget: the run kept its last weights
        elif kept >= steps > 0:
            cause = "still improving"
        elif val >= probe_val:
            cause = "validation misled"
        else:
            cause = f"fell after step {kept:.0f}"
        rows.append(
            {
                "dataset": r["dataset"],
                "backbone": r["backbone"],
                "budget": str(r["budget"]),
                "strategy": r["strategy"],
                "gap": gap["gain"],
                "gap_ci_low": gap["gain_ci_low"],
                "gap_ci_high": gap["gain_ci_high"],
                "val_acc": val,
                "probe_val_acc": probe_val,
                "steps": steps,
                "best_step": kept,
                "cause": cause,
            }
        )
    return pd.DataFrame(rows)


def budget_order(budget: int | str) -> tuple[int, float, str]:
    """Numeric budgets in numeric order, anything else (``all``) after them."""
    try:
        return 0, float(budget), ""
    except ValueError:
        return 1, math.inf, budget


def verdicts(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A row per (dataset, budget): the best strategy and those not significantly worse than it.

    Each strategy's accuracies there are one per (backbone, seed) pair. ``best`` has the highest mean of them
    (ties: the first name in sorted order); ``best_mean``, ``best_ci_low`` and ``best_ci_high`` are its
    ``accuracy_ci95`` over its ``pairs`` (backbone, seed) accuracies (with the test-set sizes where every seed
    recorded a confusion matrix). Every other strategy is compared with the best by a paired t-test over the
    (backbone, seed) pairs both have (``paired_gain``, two-sided); the p-values are Holm-adjusted within the
    dataset and budget (``holm``; an undefined p-value, from fewer than 2 shared pairs or identical differences,
    is no comparison). A strategy is significantly worse when its adjusted p-value is below 0.05 and its mean
    paired difference from the best is negative; ``not_worse`` lists the best itself and every other strategy
    that is not (adjusted p >= 0.05 or undefined), ``worse`` the rest, each by descending mean accuracy.
    ``p_holm`` maps each other strategy to its adjusted p-value. Rows are sorted by dataset, then budget
    (numeric budgets in numeric order, ``all`` last).
    """
    by_cell: dict[tuple[str, str], dict[str, dict[tuple[str, int], tuple[float, int | None]]]] = {}
    for r in records:
        runs = by_cell.setdefault((r["dataset"], str(r["budget"])), {}).setdefault(r["strategy"], {})
        for s in r["seeds"]:
            runs[(r["backbone"], s["seed"])] = (s["test_acc"], n_test_examples(s))
    rows = []
    for (dataset, budget), strategies in sorted(by_cell.items(), key=lambda kv: (kv[0][0], budget_order(kv[0][1]))):
        means = {name: float(np.mean([a for a, _ in runs.values()])) for name, runs in strategies.items()}
        order = sorted(means, key=lambda name: (-means[name], name))
        best = order[0]
        accs = [a for a, _ in strategies[best].values()]
        sizes = [n for _, n in strategies[best].values()]
        mean, low, high = accuracy_ci95(accs, None if None in sizes else sizes)
        others = order[1:]
        p, gain = [], []
        for name in others:
            shared = [pair for pair in strategies[name] if pair in strategies[best]]
            g = {"p_value": math.nan, "gain": math.nan}
            if shared:
                g = paired_gain([strategies[name][k][0] for k in shared], [strategies[best][k][0] for k in shared])
            p.append(g["p_value"])
            gain.append(g["gain"])
        adjusted = holm(p)
        worse = [n for n, q, g in zip(others, adjusted, gain, strict=True) if q < ALPHA and g < 0]
        rows.append(
            {
                "dataset": dataset,
                "budget": budget,
                "best": best,
                "best_mean": mean,
                "best_ci_low": low,
                "best_ci_high": high,
                "pairs": len(accs),
                "strategies": len(order),
                "not_worse": [best] + [n for n in others if n not in worse],
                "worse": worse,
                "p_holm": dict(zip(others, (float(q) for q in adjusted), strict=True)),
            }
        )
    return pd.DataFrame(rows)


def ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Each strategy's rank (1 = best mean accuracy, ties averaged) in every group, and its mean rank."""
    ranked = table.assign(rank=table.groupby(GROUP)["acc_mean"].rank(ascending=False, method="average"))
    summary = ranked.groupby("strategy")["rank"].agg(mean_rank="mean", groups="count")
    return summary.sort_values("mean_rank").reset_index()


def friedman(table: pd.DataFrame) -> dict[str, Any]:
    """The Friedman test of the strategies (treatments) over the GROUP blocks, on ``acc_mean``, and Iman-Davenport's F.

    Only blocks in which every strategy of the table ran are used (``n_blocks`` of ``n_blocks_total``). In each
    block the strategies are ranked by accuracy (1 = best, ties averaged); ``mean_ranks`` is each strategy's mean
    rank (a Series, best first). With k strategies, N blocks and R_j the mean ranks,
    chi2 = 12 N / (k (k + 1)) * (sum_j R_j^2 - k (k + 1)^2 / 4), divided by the tie correction
    1 - sum (t^3 - t) / (N k (k^2 - 1)) over every group of t tied values in a block (as
    ``scipy.stats.friedmanchisquare`` does), and ``p_value`` is its chi-square (k - 1 df) upper tail.
    ``iman_davenport_f`` = (N - 1) chi2 / (N (k - 1) - chi2), with F(``df1`` = k - 1, ``df2`` = (k - 1)(N - 1))
    upper tail ``iman_davenport_p`` (Demšar 2006 prefers it to chi2, which is conservative); it is infinite,
    with p 0, when every block ranks the strategies the same way.

    Needs k >= 3 and N >= 2, and some block without every value tied; otherwise the statistics are NaN and
    ``reason`` says why (it is None when they were computed).
    """
    wide = table.pivot_table(index=GROUP, columns="strategy", values="acc_mean") if len(table) else pd.DataFrame()
    total = len(wide)
    wide = wide.dropna()
    k, n = wide.shape[1], len(wide)
    ranked = wide.rank(axis=1, ascending=False, method="average")
    out: dict[str, Any] = {
        "k": k,
        "n_blocks": n,
        "n_blocks_total": total,
        "mean_ranks": ranked.mean().sort_values().rename("mean_rank") if n else pd.Series(dtype=float),
        "chi2": math.nan,
        "p_value": math.nan,
        "iman_davenport_f": math.nan,
        "iman_davenport_p": math.nan,
        "df1": k - 1,
        "df2": (k - 1) * (n - 1),
        "reason": None,
    }
    if k < 3:
        out["reason"] = f"{k} strategies: the Friedman test needs at least 3"
        return out
    if n < 2:
        out["reason"] = f"{n} block(s) where every strategy ran: the Friedman test needs at least 2"
        return out
    ties = sum(float(np.sum(c**3 - c)) for c in (np.unique(row, return_counts=True)[1] for row in ranked.to_numpy()))
    correction = 1 - ties / (n * k * (k * k - 1))
    if correction <= 0:
        out["reason"] = "every strategy tied in every block: no ranking to test"
        return out
    r = ranked.mean().to_numpy()
    chi2 = 12 * n / (k * (k + 1)) * (float(np.sum(r**2)) - k * (k + 1) ** 2 / 4) / correction
    out["chi2"] = chi2
    out["p_value"] = float(stats.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2
    if denominator <= 1e-12 * n * (k - 1):
        out["iman_davenport_f"], out["iman_davenport_p"] = math.inf, 0.0
    else:
        f = (n - 1) * chi2 / denominator
        out["iman_davenport_f"] = f
        out["iman_davenport_p"] = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
    return out


def nemenyi_cd(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """The Nemenyi critical difference of mean ranks: q_alpha * sqrt(k (k + 1) / (6 N)).

    q_alpha is the studentized range's upper-alpha quantile for k means and infinite degrees of freedom divided
    by sqrt(2) (Demšar 2006, Table 5(a): 1.960 for k = 2, 2.569 for k = 4). Two strategies whose mean ranks over
    N = ``n_blocks`` blocks differ by at least this are significantly different.
    """
    if k < 2 or n_blocks < 1:
        raise ValueError(f"the critical difference needs k >= 2 strategies and a block, got k={k}, N={n_blocks}")
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n_blocks))


def cd_groups(mean_ranks: pd.Series, cd: float) -> list[list[str]]:
    """The maximal sets of strategies whose mean ranks all differ by less than ``cd`` (the bars of a CD diagram).

    The strategies in rank order; from each, the run of those after it whose rank is less than ``cd`` above its
    own; runs inside an earlier one are dropped. Strategies within a set are not significantly different; a
    strategy that differs from every other is a set of its own. Sets come best first, each in rank order
    (NaN ranks are left out).
    """
    r = mean_ranks.dropna().sort_values(kind="stable")
    names, values = list(r.index), r.to_numpy(dtype=float)
    groups: list[list[str]] = []
    end = -1
    for i in range(len(values)):
        j = i
        while j + 1 < len(values) and values[j + 1] - values[i] < cd:
            j += 1
        if j > end:
            groups.append([str(name) for name in names[i : j + 1]])
            end = j
    return groups


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


def _permutations(n: int, rng: np.random.Generator, draws: int = PERMUTATIONS) -> tuple[np.ndarray, bool]:
    """Every permutation of range(n) when there are at most EXACT_PERMUTATIONS, else ``draws`` random ones."""
    if math.factorial(n) <= EXACT_PERMUTATIONS:
        return np.array(list(itertools.permutations(range(n)))), True
    return np.array([rng.permutation(n) for _ in range(draws)]), False


def _pair_signs(v: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for every pair i < j (along the last axis)."""
    i, j = np.triu_indices(v.shape[-1], 1)
    return np.sign(v[..., i] - v[..., j])


def _permutation_p(observed: float, permuted: np.ndarray, exact: bool) -> float:
    """Two-sided: the share of permutations whose |statistic| reaches |observed| (the identity counts once if
    drawn at random: (1 + hits) / (1 + draws)); NaN for a NaN statistic."""
    if math.isnan(observed):
        return math.nan
    hits = int(np.count_nonzero(np.abs(permuted) >= abs(observed) - 1e-12))
    return hits / len(permuted) if exact else (1 + hits) / (1 + len(permuted))


def _kendall_parts(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """For every row of y (permutations of one group's outcomes): concordant minus discordant pairs with x; and
    the pairs, the pairs tied in x and the pairs tied in y (the same for every row)."""
    sx = _pair_signs(x)
    sy = _pair_signs(y)
    return sy @ sx, len(sx), int(np.count_nonzero(sx == 0)), int(np.count_nonzero(sy[0] == 0))


def _weighted_taus(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.array([stats.weightedtau(x, y).statistic for y in ys])


def rank_correlations(points: pd.DataFrame, scores: list[str], outcomes: list[str], group: list[str]) -> pd.DataFrame:
    """How well each score orders the backbones by each outcome, in every group and pooled over the groups.

    ``points`` has a row per backbone per group (the ``group`` columns), score columns (higher = predicted
    better) and outcome columns (realised accuracies). For each group and each (score, outcome), the ``n`` rows
    with both values: ``tau`` and ``tau_p`` are ``scipy.stats.kendalltau``'s tau-b and two-sided p-value;
    ``weighted_tau`` is ``scipy.stats.weightedtau`` (hyperbolic weights, the top of both orders counting most)
    and ``weighted_tau_p`` its two-sided permutation p-value: the share of permutations of the outcomes whose
    |weighted tau| reaches the observed one, over all n! permutations when n! <= 5040, else (1 + hits) / 2001
    over 2000 random ones (fixed seed). A group with fewer than 3 such rows gets n, NaNs and ``note`` =
    FEW_BACKBONES (otherwise the note is empty); it takes no part in the pooled row.

    The pooled row (``all`` in every group column, ``groups`` = how many groups) compares backbones only within
    a group, so scores on different scales in different groups do not mix: ``tau`` is tau-b over the
    within-group pairs, sum (concordant - discordant) / sqrt((P - Tx)(P - Ty)) with P the within-group pairs
    (``pairs``) and Tx, Ty those tied in the score, in the outcome; ``weighted_tau`` is the mean of the
    groups' weighted taus. Both p-values are two-sided permutation p-values that permute the outcomes within
    each group (exact when the product of the groups' n! is at most 5040, else 2000 random draws).
    """
    keys = points.groupby(group, sort=False, dropna=False).indices if len(points) else {}
    rows = []
    for score in scores:
        for outcome in outcomes:
            pooled = []
            for key, index in keys.items():
                key = key if isinstance(key, tuple) else (key,)
                sub = points.iloc[index][[score, outcome]].dropna()
                x, y = sub[score].to_numpy(dtype=float), sub[outcome].to_numpy(dtype=float)
                row = {**dict(zip(group, key, strict=True)), "score": score, "outcome": outcome, "n": len(x)}
                row |= {"groups": 1, "pairs": len(x) * (len(x) - 1) // 2}
                if len(x) < 3:
                    nan = {c: math.nan for c in ("tau", "tau_p", "weighted_tau", "weighted_tau_p")}
                    rows.append(row | nan | {"note": FEW_BACKBONES})
                    continue
                tau = stats.kendalltau(x, y)
                perms, exact = _permutations(len(x), np.random.default_rng(PERMUTATION_SEED))
                weighted = float(stats.weightedtau(x, y).statistic)
                row |= {"tau": float(tau.statistic), "tau_p": float(tau.pvalue), "weighted_tau": weighted}
                row["weighted_tau_p"] = _permutation_p(weighted, _weighted_taus(x, y[perms]), exact)
                rows.append(row | {"note": ""})
                pooled.append((x, y))
            rows.append(_pooled(pooled, score, outcome, group))
    columns = [*group, "score", "outcome", "n", "groups", "pairs", "tau", "tau_p", "weighted_tau", "weighted_tau_p"]
    return pd.DataFrame(rows, columns=[*columns, "note"])


def _pooled(pooled: list[tuple[np.ndarray, np.ndarray]], score: str, outcome: str, group: list[str]) -> dict:
    """The pooled row of ``rank_correlations``: within-group pairs only, outcomes permuted within groups."""
    row = {**{c: "all" for c in group}, "score": score, "outcome": outcome, "n": sum(len(x) for x, _ in pooled)}
    row |= {"groups": len(pooled), "pairs": sum(len(x) * (len(x) - 1) // 2 for x, _ in pooled)}
    if not pooled:
        nan = {c: math.nan for c in ("tau", "tau_p", "weighted_tau", "weighted_tau_p")}
        return row | nan | {"note": FEW_BACKBONES}
    exact = math.prod(math.factorial(len(x)) for x, _ in pooled) <= EXACT_PERMUTATIONS
    rng = np.random.default_rng(PERMUTATION_SEED)
    perms = [_permutations(len(x), rng)[0] for x, _ in pooled] if exact else None
    if exact:  # every combination of the groups' permutations: for each group, which of its own to take
        pick = [np.asarray(c) for c in zip(*itertools.product(*(range(len(p)) for p in perms)), strict=True)]
    else:  # the b-th random draw of every group together
        perms = [np.array([rng.permutation(len(x)) for _ in range(PERMUTATIONS)]) for x, _ in pooled]
        pick = [np.arange(PERMUTATIONS)] * len(pooled)
    numerator, weighted = 0, 0
    pairs = tied_x = tied_y = 0
    for (x, y), p, i in zip(pooled, perms, pick, strict=True):
        s, n_pairs, tx, ty = _kendall_parts(x, y[p])
        numerator = numerator + s[i]
        weighted = weighted + _weighted_taus(x, y[p])[i] / len(pooled)
        pairs, tied_x, tied_y = pairs + n_pairs, tied_x + tx, tied_y + ty
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    observed = sum(float(_pair_signs(x) @ _pair_signs(y)) for x, y in pooled)
    observed_weighted = float(np.mean([stats.weightedtau(x, y).statistic for x, y in pooled]))
    row["tau"] = observed / denominator if denominator else math.nan
    row["tau_p"] = _permutation_p(row["tau"], numerator / denominator, exact) if denominator else math.nan
    row["weighted_tau"] = observed_weighted
    row["weighted_tau_p"] = _permutation_p(observed_weighted, weighted, exact)
    return row | {"note": ""}
