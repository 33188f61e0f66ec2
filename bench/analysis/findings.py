"""What a report says, computed once: ``analyse`` turns finished records into an ``Analysis`` (the summary table,
verdicts, gains over scratch, comparisons with the probe, the matrix-wide aggregate, ranks, Friedman, data
equivalence, compute, transferability beside the accuracies). The first of the report's three steps
(``findings`` -> ``sections`` -> ``report``): nothing after it computes a statistic."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench.analysis import stats
from bench.strategies import Role, baselines

if TYPE_CHECKING:
    pass

# Published figures for sanity checks (from the data mirror's README): dataset -> (method, accuracy)
REFERENCES = {
    "cifar10": ("ResNet-18, full 50k training images, original PNGs", 0.93),
    "fashion_mnist": ("ResNet-18 (upstream README)", 0.949),
    "reuters_r8": ("TextGCN (Yao et al. 2019); fine-tuned BERT about 97.8 %", 0.9707),
    "20newsgroups": ("TextGCN (Yao et al. 2019)", 0.8634),
    "sms_spam": ("linear SVM (Almeida et al. 2011)", 0.9764),
    "fsdd": ("spectrogram CNNs (informal sources), 97-99 %", 0.97),
}

SUMMARY_COLUMNS = [
    "modality",
    "dataset",
    "backbone",
    "budget",
    "n_train",
    "n_val",
    "n_test",
    "examples_per_class",
    "strategy",
    "identical_to",
    "seeds",
    "test_acc_mean",
    "test_acc_std",
    "test_acc_ci_low",
    "test_acc_ci_high",
    "test_macro_f1_mean",
    "scratch_acc_mean",
    "gain_over_scratch",
    "gain_ci_low",
    "gain_ci_high",
    "gain_verdict",
    "p_improve",
    "negative_transfer",
    "trials_complete",
    "trials_pruned",
    "steps",
    "best_step",
    "best_hp",
    "cell_key",
]


def _hp_text(hp: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hp.items()))


def _summary(
    records: list[dict[str, Any]],
    table: pd.DataFrame,
    copies: dict[str, str],
    gains: pd.DataFrame,
    scratch: str | None,
) -> pd.DataFrame:
    """``summarize`` from what the analysis computed already: the cells' ``table`` (``stats.cells``), the
    ``copies`` (``stats.identical_to``), the ``gains`` over the strategy ``scratch``."""
    df = pd.DataFrame(records)
    df["budget"] = df["budget"].astype(str)
    df["n_train"] = [sum(r["seeds"][0]["train_counts"].values()) for r in records]
    df["n_val"] = [r["seeds"][0].get("n_val", math.nan) for r in records]
    df["n_test"] = [stats.n_test_examples(r["seeds"][0]) for r in records]
    df["identical_to"] = [copies.get(r["cell_key"], "") for r in records]
    df["examples_per_class"] = [stats.budget_per_class(r) for r in records]
    df["best_hp"] = df["best_hp"].map(_hp_text)
    df["steps"] = [_median_of(r, "steps") for r in records]
    df["best_step"] = [_median_of(r, "best_step") for r in records]
    df = df.drop(columns=["seeds"]).merge(table, on=["modality", "dataset", "backbone", "budget", "strategy"])
    df = df.rename(
        columns={"acc_mean": "test_acc_mean_", "acc_ci_low": "test_acc_ci_low", "acc_ci_high": "test_acc_ci_high"}
    )
    df["test_acc_mean"], df["test_acc_std"] = df.pop("test_acc_mean_"), df.pop("acc_std")
    group = list(stats.GROUP)
    baseline = df[df.strategy == scratch].set_index(group)["test_acc_mean"].rename("scratch_acc_mean")
    df = df.join(baseline, on=group)
    if len(gains):
        gains = gains.rename(columns={"gain": "gain_over_scratch"})
        df = df.merge(gains.drop(columns=["seeds", "n_test"]), on=[*group, "strategy"], how="left")
    for col in SUMMARY_COLUMNS:
        if col not in df:
            df[col] = math.nan
    df.loc[df.strategy == scratch, "gain_over_scratch"] = 0.0
    return df[SUMMARY_COLUMNS]


def summarize(
    records: list[dict[str, Any]], rope: float = stats.ROPE, confidence: float = stats.CONFIDENCE
) -> pd.DataFrame:
    """A row per cell: the labelled and test examples it used (seed 0's), accuracy over seeds and test examples with
    its interval, the strategy whose predictions it copies at every seed (``identical_to``), and the paired
    comparison with scratch (``Role.SCRATCH``) with its verdict (none for a copy: it is the same result)."""
    copies = stats.identical_to(records)
    gains = stats.gains_over_scratch(stats.distinct(records, copies), rope, confidence)
    scratch = stats.baseline(records, Role.SCRATCH)
    return _summary(records, stats.cells(records, confidence), copies, gains, scratch)


def _median_of(record: dict[str, Any], key: str) -> float:
    """The median over a cell's final seeds of what each recorded (NaN where none did: cells of older versions)."""
    values = [s[key] for s in record["seeds"] if s.get(key) is not None]
    return float(np.median(values)) if values else math.nan


def compute(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A row per cell: what its final runs spent (median optimiser steps, the step whose weights they kept,
    seconds per run), the cell's minutes with its tuning, and its mean test accuracy; cells of versions that
    recorded no seconds per run are left out."""
    rows = [
        {
            "dataset": r["dataset"],
            "backbone": r["backbone"],
            "budget": str(r["budget"]),
            "strategy": r["strategy"],
            "steps": _median_of(r, "steps"),
            "best_step": _median_of(r, "best_step"),
            "seconds_per_run": _median_of(r, "seconds"),
            "cell_minutes": r.get("seconds", math.nan) / 60,
            "acc_mean": float(np.mean([s["test_acc"] for s in r["seeds"]])),
        }
        for r in records
    ]
    table = pd.DataFrame(rows)
    return table[table.seconds_per_run.notna()] if len(table) else table


OUTCOMES = {
    "probe": "probe",
    "best_finetune": "best fine-tune",
}  # transferability_scores.against_outcomes: column -> as read


@dataclass(frozen=True)
class Transfer:
    """The transferability scores beside the accuracies reached (``transferability_scores.against_outcomes``), and
    how well each score ranks the backbones by each outcome (``stats.rank_correlations``; None without an outcome)."""

    rows: pd.DataFrame  # a row per (backbone, dataset, budget, seed): bench.analysis.transferability_scores's
    points: pd.DataFrame
    outcomes: list[str]  # the OUTCOMES with a value somewhere
    taus: pd.DataFrame | None


@dataclass(frozen=True)
class Analysis:
    """Every statistic the report shows, computed once from the finished cells (``analyse``); the sections only
    format it. Comparisons count strategies with identical predictions once (``results``, ``distinct_cells``)."""

    experiment: str
    records: list[dict[str, Any]]
    cell_seconds: float | None
    rope: float
    confidence: float
    roles: dict[Role, str]  # the baselines among the strategies (strategies.baselines): scratch, the probe
    table: pd.DataFrame  # stats.cells: a row per cell
    summary: pd.DataFrame  # summary.csv
    results: list[dict[str, Any]]  # the records without copies
    distinct_cells: pd.DataFrame  # stats.cells of the results: ranks and the Friedman test count a copy once
    verdicts: pd.DataFrame  # verdicts.csv: every strategy against the best of its dataset and budget
    gains: pd.DataFrame  # gains.csv: against scratch, cell by cell
    probe: pd.DataFrame  # probe.csv: against the probe, cell by cell
    across: list[pd.DataFrame]  # stats.across_matrix against the probe, then scratch (those present)
    below: pd.DataFrame  # stats.below_probe
    friedman: dict[str, Any]  # stats.friedman, with the Nemenyi ``cd`` and its ``groups`` where computed
    ranks: pd.DataFrame
    wins: pd.DataFrame  # stats.win_rates
    equivalence: pd.DataFrame  # per strategy: the examples per class scratch needs to match it
    spent: pd.DataFrame  # compute: a row per cell with recorded seconds
    spent_by_strategy: pd.DataFrame  # the medians (and sum of minutes) of ``spent`` per strategy
    references: pd.DataFrame  # the best cell of each dataset with a published figure
    transfer: Transfer | None  # None: no transferability scores

    def name(self, role: Role) -> str:
        """The strategy playing ``role``; the role's own words where none does."""
        return self.roles.get(role, role.value)


def analyse(
    experiment: str,
    records: list[dict[str, Any]],
    cell_seconds: float | None = None,
    scores: pd.DataFrame | None = None,
    rope: float = stats.ROPE,
    confidence: float = stats.CONFIDENCE,
) -> Analysis:
    """Every statistic of the report of ``records``: ``scores`` are the transferability rows of
    ``bench.analysis.transferability_scores`` (none: the report says so); ``rope`` and ``confidence`` decide the
    verdicts (the experiment's ``statistics``)."""
    roles = baselines({r["strategy"] for r in records})
    scratch, probe = roles.get(Role.SCRATCH), roles.get(Role.PROBE)
    table = stats.cells(records, confidence)
    copies = stats.identical_to(records)
    results = stats.distinct(records, copies)
    gains = stats.gains_over_scratch(results, rope, confidence, scratch) if scratch else pd.DataFrame()
    distinct_cells = stats.cells(results, confidence)
    spent = compute(records)
    return Analysis(
        experiment=experiment,
        records=records,
        cell_seconds=cell_seconds,
        rope=rope,
        confidence=confidence,
        roles=roles,
        table=table,
        summary=_summary(records, table, copies, gains, scratch),
        results=results,
        distinct_cells=distinct_cells,
        verdicts=stats.verdicts(results, rope, confidence),
        gains=gains,
        probe=stats.against(results, probe, rope, confidence) if probe else pd.DataFrame(),
        across=[
            a
            for reference in (probe, scratch)
            if reference and len(a := stats.across_matrix(results, reference, rope, confidence))
        ],
        below=stats.below_probe(records, roles=roles),
        friedman=_friedman(distinct_cells),
        ranks=stats.ranks(distinct_cells),
        wins=stats.win_rates(table),
        equivalence=_equivalence(table, scratch),
        spent=spent,
        spent_by_strategy=_spent_by_strategy(spent),
        references=_references(table),
        transfer=_transfer(scores, table) if scores is not None and len(scores) else None,
    )


def _friedman(table: pd.DataFrame) -> dict[str, Any]:
    """``stats.friedman`` over the strategies, with Nemenyi's critical difference ``cd`` and the ``groups`` of
    strategies within it (``stats.cd_groups``) where the test could be computed."""
    f = stats.friedman(table)
    if f["reason"]:
        return f
    cd = stats.nemenyi_cd(f["k"], f["n_blocks"])
    return f | {"cd": cd, "groups": stats.cd_groups(f["mean_ranks"], cd)}


def _equivalence(table: pd.DataFrame, scratch: str | None) -> pd.DataFrame:
    """Per (dataset, backbone, strategy) with scratch measured at two budgets or more: the examples per class scratch
    needs to match the strategy's accuracy (``stats.data_equivalence``: ``sign`` and ``n``)."""
    rows = []
    for (dataset, backbone), df in table.groupby(["dataset", "backbone"], sort=False):
        base = df[df.strategy == scratch].sort_values("per_class")
        if len(base) < 2:
            continue
        for r in df[df.strategy != scratch].itertuples():
            sign, n = stats.data_equivalence(base.per_class.tolist(), base.acc_mean.tolist(), r.acc_mean)
            rows.append(
                {
                    "dataset": dataset,
                    "backbone": backbone,
                    "strategy": r.strategy,
                    "per_class": r.per_class,
                    "acc_mean": r.acc_mean,
                    "sign": sign,
                    "n": n,
                }
            )
    return pd.DataFrame(rows)


def _spent_by_strategy(spent: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: its cells, the medians of their steps, kept steps and seconds per run, and their minutes."""
    if not len(spent):
        return spent
    return (
        spent.groupby("strategy")
        .agg(
            cells=("acc_mean", "size"),
            steps=("steps", "median"),
            best_step=("best_step", "median"),
            seconds_per_run=("seconds_per_run", "median"),
            cell_minutes=("cell_minutes", "sum"),
        )
        .round({"steps": 0, "best_step": 0, "seconds_per_run": 1, "cell_minutes": 1})
        .reset_index()
    )


def _references(table: pd.DataFrame) -> pd.DataFrame:
    """The best cell of each dataset that has a published figure (``REFERENCES``), beside that figure."""
    rows = []
    for dataset, df in table.groupby("dataset", sort=False):
        if dataset not in REFERENCES:
            continue
        best = df.loc[df.acc_mean.idxmax()]
        method, acc = REFERENCES[dataset]
        rows.append(
            {**best[["dataset", "strategy", "backbone", "per_class", "acc_mean"]], "acc": acc, "method": method}
        )
    return pd.DataFrame(rows)


def _transfer(rows: pd.DataFrame, table: pd.DataFrame) -> Transfer:
    """The scores of each backbone beside the accuracies it reached, and their rank correlations."""
    from bench.analysis import transferability_scores

    points = transferability_scores.against_outcomes(rows, table)
    outcomes = [o for o in OUTCOMES if points[o].notna().any()]
    taus = (
        stats.rank_correlations(points, transferability_scores.SCORES, outcomes, ["dataset", "budget"])
        if outcomes
        else None
    )
    return Transfer(rows, points, outcomes, taus)
