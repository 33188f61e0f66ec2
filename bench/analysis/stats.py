"""Statistics over finished cells: accuracies with intervals, verdicts against the best strategy and gains over
scratch (paired over seeds and test examples, ``bench.analysis.comparison``), the matrix-wide aggregate, ranks, win
rates, the Friedman test with Nemenyi critical differences, rank correlations of transferability scores with realised
accuracy, and data equivalence. Pure functions of result records, so they can be checked on constructed numbers.

A record is what the runner stores per cell: its tags (dataset, backbone, budget, strategy, ...) and
``seeds``, a list of per-seed results with ``test_acc``, ``predictions`` (per test example) and
``confusion_matrix``. Seeds are paired: at the same dataset, budget and seed every strategy saw the same training
examples, and every strategy of a dataset is tested on the same examples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bench.analysis import comparison
from bench.strategies import Role, baselines

GROUP = ["dataset", "backbone", "budget"]
ALPHA = 0.05
ROPE = 0.01  # the default region of practical equivalence (StatisticsConfig.rope): 1 point of accuracy
CONFIDENCE = 0.95
# Permutation tests enumerate every permutation up to this many, else draw PERMUTATIONS random ones
EXACT_PERMUTATIONS = 5040  # 7!
PERMUTATIONS = 2000
PERMUTATION_SEED = 0
FEW_BACKBONES = "fewer than 3 backbones: no conclusion"


def n_test_examples(seed: dict[str, Any]) -> int | None:
    """The number of test examples behind a seed's accuracy: its confusion matrix's total, if recorded."""
    cm = seed.get("confusion_matrix")
    return int(np.sum(cm)) if cm else None


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


def cells(records: list[dict[str, Any]], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """A row per cell: mean test accuracy over its seeds and test examples, its interval counting both
    (``comparison.accuracy``), the standard deviation of the seeds' accuracies, and mean macro-F1."""
    rows = []
    for r in records:
        accs = [s["test_acc"] for s in r["seeds"]]
        mean, low, high = comparison.accuracy(comparison.correct([r]), confidence)
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


def _by_group(records: list[dict[str, Any]], group: list[str]) -> dict[tuple, dict[str, list[dict[str, Any]]]]:
    """The records by ``group`` (e.g. dataset and budget), then by strategy, in record order."""
    out: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        out.setdefault(tuple(str(r[k]) for k in group), {}).setdefault(r["strategy"], []).append(r)
    return out


def baseline(records: list[dict[str, Any]], role: Role) -> str | None:
    """The strategy of ``records`` that plays the baseline ``role`` (None: none does)."""
    return baselines({r["strategy"] for r in records}).get(role)


BEST = "best"  # the verdict of a dataset and budget's best strategy, and the kind of a contest against it
SAME_CELL = "same cell"  # the kind of a contest against a given strategy at the same dataset, backbone and budget


@dataclass(frozen=True)
class Contest:
    """One paired comparison the report makes: ``strategy`` against the best of its dataset and budget (``kind``
    BEST, backbones pooled) or against a given ``reference`` (scratch, the probe) at its dataset, backbone and budget
    (``kind`` SAME_CELL)."""

    kind: str
    group: dict[str, str]
    strategy: str
    reference: str
    difference: comparison.Difference | None  # None: the two share no run
    cell_keys: tuple[str, ...]  # both sides' cells: where more seeds go when racing


def contests(
    records: list[dict[str, Any]],
    confidence: float = CONFIDENCE,
    best: bool = True,
    references: Collection[str] | None = None,
) -> list[Contest]:
    """Every strategy against the best of its (dataset, budget) when ``best``, then against each strategy named in
    ``references`` at its (dataset, backbone, budget); by default that is the scratch baseline (``Role.SCRATCH``)
    among the records. Pass records without copies (``distinct``): a copy is the same result."""
    if references is None:
        references = [name] if (name := baseline(records, Role.SCRATCH)) else []
    out = []
    for kind in [BEST] * best + list(references):
        group = ["dataset", "budget"] if kind == BEST else GROUP
        for key, strategies in _by_group(records, group).items():
            runs = {name: comparison.correct(cell) for name, cell in strategies.items()}
            if kind == BEST:
                reference = _best(runs, confidence)
            elif kind in runs:
                reference = kind
            else:
                continue
            for name in runs:
                if name != reference:
                    out.append(
                        Contest(
                            BEST if kind == BEST else SAME_CELL,
                            dict(zip(group, key, strict=True)),
                            name,
                            reference,
                            comparison.difference(runs[name], runs[reference], confidence),
                            tuple(r.get("cell_key", "") for r in strategies[name] + strategies[reference]),
                        )
                    )
    return out


def _best(runs: dict[str, dict[comparison.Run, dict[int, float]]], confidence: float) -> str:
    """The strategy with the highest mean accuracy over its runs and test examples (ties: the first name)."""
    means = {name: comparison.accuracy(r, confidence)[0] for name, r in runs.items()}
    return min(means, key=lambda name: (-means[name], name))


def against(
    records: list[dict[str, Any]], reference: str, rope: float = ROPE, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Each strategy against the strategy ``reference`` (scratch, the probe) at the same backbone, dataset and budget,
    paired by seed and test example: ``diff``, its interval ``ci_low``, ``ci_high`` over seeds and test examples
    (``comparison.difference``), the ``verdict`` against +-``rope`` (better, worse, equivalent, undecided),
    ``p_improve`` (the share of run pairs the strategy wins), the ``seeds`` both ran and ``n_test``. Pass records
    without copies (``distinct``)."""
    rows = []
    for c in contests(records, confidence, best=False, references=[reference]):
        if (d := c.difference) is None:
            continue
        rows.append(
            {
                **c.group,
                "strategy": c.strategy,
                "diff": d.diff,
                "ci_low": d.estimate.ci_low,
                "ci_high": d.estimate.ci_high,
                "verdict": d.verdict(rope),
                "p_improve": d.p_improve,
                "seeds": d.estimate.seeds,
                "n_test": d.estimate.n_test,
            }
        )
    return pd.DataFrame(rows)


def gains_over_scratch(
    records: list[dict[str, Any]], rope: float = ROPE, confidence: float = CONFIDENCE, scratch: str | None = None
) -> pd.DataFrame:
    """``against`` the strategy ``scratch`` (by default the records' ``Role.SCRATCH`` baseline), as gains: ``gain``,
    ``gain_ci_low``, ``gain_ci_high``, ``gain_verdict``, ``p_improve``, ``seeds``, ``n_test``, and
    ``negative_transfer`` where the verdict is worse."""
    scratch = scratch or baseline(records, Role.SCRATCH)
    out = against(records, scratch, rope, confidence) if scratch else pd.DataFrame()
    if not len(out):
        return out
    out = out.rename(
        columns={"diff": "gain", "ci_low": "gain_ci_low", "ci_high": "gain_ci_high", "verdict": "gain_verdict"}
    )
    return out.assign(negative_transfer=out.gain_verdict == comparison.WORSE)


BELOW_PROBE_MARGIN = 0.05  # how far under the linear probe a strategy that trains more may end before it is flagged


def below_probe(
    records: list[dict[str, Any]],
    margin: float = BELOW_PROBE_MARGIN,
    confidence: float = CONFIDENCE,
    roles: dict[Role, str] | None = None,
) -> pd.DataFrame:
    """Strategies whose mean test accuracy ends more than ``margin`` below the linear probe at the same backbone,
    dataset and budget, paired by seed, with what their runs measured to explain it. ``roles`` names the baselines
    (``strategies.baselines``; by default those among the records): the probe, and scratch, which is not compared.

    Each row has the paired gap and its interval over seeds and test examples (``comparison.difference``), both
    sides' median validation accuracy, the median optimiser steps and step of the kept weights, and ``cause``:
    ``"still improving"`` when the runs kept their last step (the step cap cut them short), ``"validation
    misled"`` when the kept weights validated at least as well as the probe (the small validation set chose
    weights that do not generalise), ``"fixed schedule"`` when the budget left no hold-out (the runs kept their
    last weights), else ``"fell after step b"``: training moved away from the probe's solution
    faster than it improved on it, and early stopping kept the best point it reached; ``"not recorded"`` for runs
    of a version that kept no steps.
    """
    roles = baselines({r["strategy"] for r in records}) if roles is None else roles
    key = lambda r: (r["dataset"], r["backbone"], str(r["budget"]))  # noqa: E731
    probes = {key(r): r for r in records if r["strategy"] == roles.get(Role.PROBE)}
    rows = []
    for r in records:
        probe = probes.get(key(r))
        if r["strategy"] in roles.values() or probe is None:
            continue
        by_seed = {s["seed"]: s for s in probe["seeds"]}
        seeds = [s for s in r["seeds"] if s["seed"] in by_seed]
        gap = comparison.difference(comparison.correct([r]), comparison.correct([probe]), confidence)
        if not seeds or gap is None or gap.diff >= -margin:
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
                "gap": gap.diff,
                "gap_ci_low": gap.estimate.ci_low,
                "gap_ci_high": gap.estimate.ci_high,
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


def verdicts(records: list[dict[str, Any]], rope: float = ROPE, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """A row per (dataset, budget, strategy): how the strategy compares with the best of its dataset and budget.

    A strategy's runs there are its (backbone, seed) pairs. The best has the highest mean accuracy over its runs
    and test examples (ties: the first name in sorted order) and the verdict ``best``; every other strategy is
    compared with it over the runs and test examples both have (``contests``): ``diff`` (strategy minus best),
    its interval ``ci_low``, ``ci_high``, ``p_improve`` (the share of run pairs it wins), and the verdict against
    +-``rope``: ``worse``, ``equivalent`` or ``undecided`` (never better: it would be the best). ``acc``,
    ``acc_ci_low`` and ``acc_ci_high`` are the strategy's own accuracy and interval; ``runs`` and ``n_test`` what
    they count. Pass records without copies (``distinct``): a copy is the same result. Rows come by dataset, then
    budget (numeric budgets in numeric order, ``all`` last), best first, then by accuracy.
    """
    against = {
        (c.group["dataset"], c.group["budget"], c.strategy): c for c in contests(records, confidence, references=[])
    }
    rows = []
    for (dataset, budget), strategies in _by_group(records, ["dataset", "budget"]).items():
        for name, cell in strategies.items():
            runs = comparison.correct(cell)
            mean, low, high = comparison.accuracy(runs, confidence)
            c = against.get((dataset, budget, name))
            d = c.difference if c is not None else None
            rows.append(
                {
                    "dataset": dataset,
                    "budget": budget,
                    "strategy": name,
                    "verdict": BEST if c is None else (d.verdict(rope) if d else comparison.UNDECIDED),
                    "diff": d.diff if d else (0.0 if c is None else math.nan),
                    "ci_low": d.estimate.ci_low if d else math.nan,
                    "ci_high": d.estimate.ci_high if d else math.nan,
                    "p_improve": d.p_improve if d else math.nan,
                    "acc": mean,
                    "acc_ci_low": low,
                    "acc_ci_high": high,
                    "runs": len(runs),
                    "n_test": len(comparison.shared(runs, runs)[1]),
                    "best": name if c is None else c.reference,
                }
            )
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    order = out.assign(_b=[budget_order(b) for b in out.budget], _first=out.verdict != BEST, _acc=-out.acc).sort_values(
        ["dataset", "_b", "_first", "_acc", "strategy"], kind="stable"
    )
    return out.loc[order.index].reset_index(drop=True)


def across_matrix(
    records: list[dict[str, Any]], reference: str, rope: float = ROPE, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Each strategy against ``reference`` averaged over the matrix, with an interval that respects its nesting.

    The difference is averaged over each dataset's budgets, then over the datasets (each dataset counts once,
    whatever its budgets). The budgets of a dataset are not independent results: they are tested on the same
    examples, so an easy or hard test example moves all of them together. The variance therefore takes each
    (dataset, budget)'s seed component (``comparison.components``) separately, and the test examples' component
    once per dataset, from each example's difference averaged over that dataset's budgets and seeds; Satterthwaite
    gives the degrees of freedom. A row per strategy: ``groups`` (dataset, budget) pairs, ``datasets``, ``diff``,
    ``ci_low``, ``ci_high`` and the ``verdict`` against +-``rope``. The intervals speak for these datasets and
    budgets, not for datasets at large: three datasets are too few for that.
    """
    by_dataset: dict[str, dict[str, list[np.ndarray]]] = {}
    for (dataset, _budget), strategies in _by_group(records, ["dataset", "budget"]).items():
        if reference not in strategies:
            continue
        base = comparison.correct(strategies[reference])
        for name, cell in strategies.items():
            runs = comparison.correct(cell)
            keys, examples = comparison.shared(runs, base)
            if name == reference or len(keys) < 2:
                continue
            d = comparison.table(runs, keys, examples) - comparison.table(base, keys, examples)
            by_dataset.setdefault(name, {}).setdefault(dataset, []).append((d, examples))
    rows = []
    for name, datasets in by_dataset.items():
        means, terms = [], []
        for tables in datasets.values():
            g = len(tables)
            shared = sorted(set.intersection(*(set(ex) for _, ex in tables)))
            means.append(float(np.mean([d.mean() for d, _ in tables])))
            example_means = np.zeros(len(shared))
            for d, examples in tables:
                s = d.shape[0]
                terms.append((comparison.components(d).seed / s / g**2, s - 1))
                position = {e: i for i, e in enumerate(examples)}
                example_means += d[:, [position[e] for e in shared]].mean(axis=0) / g
            if len(shared) > 1:
                terms.append((float(example_means.var(ddof=1)) / len(shared), len(shared) - 1))
        k = len(means)
        terms = [(v / k**2, dof) for v, dof in terms]
        variance = sum(v for v, _ in terms)
        spread = sum(v * v / dof for v, dof in terms if dof > 0)
        dof = variance**2 / spread if spread > 0 else math.inf
        mean = float(np.mean(means))
        half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * math.sqrt(variance) if variance > 0 else 0.0
        rows.append(
            {
                "strategy": name,
                "against": reference,
                "groups": sum(len(t) for t in datasets.values()),
                "datasets": k,
                "diff": mean,
                "ci_low": mean - half,
                "ci_high": mean + half,
                "verdict": comparison.verdict(mean - half, mean + half, rope),
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values("diff", ascending=False, kind="stable").reset_index(drop=True) if len(out) else out


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
