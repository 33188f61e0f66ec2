"""The report of finished results: summary.csv, report.md with statistics tables, PNG plots, the same report as one
self-contained report.html, and a short summary for the MLflow experiment's description.

Three steps, each in one place: ``analyse`` computes every statistic once into an ``Analysis``; each function of
``SECTIONS`` formats one part of the report from it (markdown, and the figures it shows, drawn later); ``write``
writes the tables, draws the figures and renders the sections as report.md and report.html. A new section is one
function and one entry in ``SECTIONS``."""

from __future__ import annotations

import base64
import datetime
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import markdown
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from bench import environment, paths
from bench.analysis import plots, stats
from bench.strategies import Role, baselines

if TYPE_CHECKING:
    from bench.config import Experiment

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


def write_predictions(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Every final seed's per-example test predictions, one row per (cell, seed, test example): what any paired
    comparison resamples. Gzipped CSV; nothing when no cell stored predictions (older versions)."""
    rows = [
        (r["dataset"], r["backbone"], str(r["budget"]), r["strategy"], s["seed"], i, y, t)
        for r in records
        for s in r["seeds"]
        if "predictions" in s
        for i, y, t in zip(*(s["predictions"][k] for k in ("test_index", "predicted", "true")), strict=True)
    ]
    if not rows:
        path.unlink(missing_ok=True)
        return None
    columns = ["dataset", "backbone", "budget", "strategy", "seed", "test_index", "predicted", "true"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


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


def _pct(x: float) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def _p(x: float) -> str:
    return "" if pd.isna(x) else f"{x:.3f}"


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


Figure = Callable[[Path], Path]  # draws one figure into the file it is given


@dataclass(frozen=True)
class Section:
    """One part of the report: its heading (level 1: the report's title), its markdown lines below the heading, and
    the figures those lines show, by file name, each drawn when the report is written."""

    title: str
    lines: tuple[str, ...]
    figures: dict[str, Figure] = field(default_factory=dict)
    level: int = 2

    @property
    def markdown(self) -> str:
        """The heading and the lines; nothing for a section with nothing to say."""
        return "\n".join([f"{'#' * self.level} {self.title}", "", *self.lines]) if self.title else ""


NOTHING = Section("", ())


def _opening(a: Analysis) -> Section:
    """What ran, on how many seeds and when; where validation came from; how long runs trained; on what."""
    fewest, most = int(a.table.seeds.min()), int(a.table.seeds.max())
    seeds = f"{fewest} paired seeds each" if fewest == most else f"{fewest} to {most} paired seeds"
    raced = int((a.table.seeds > fewest).sum())
    spent = (
        f"; its cells took {a.cell_seconds / 60:.1f} min of training, tuning and testing, summed over cells "
        "(workers train cells side by side)."
        if a.cell_seconds
        else "."
    )
    return Section(
        f"{a.experiment}: transfer against training from scratch",
        (
            f"{len(a.records)} cells, {seeds} (every strategy at a dataset, budget and seed trains on the same examples"
            + (f"; {raced} cells of comparisons still open after {fewest} seeds got more: racing" if raced else "")
            + f"). Written {datetime.date.today().isoformat()}"
            + spent,
            "",
            *_outside_budget(a.records),
            _schedule(a.records),
            "",
            *_produced_by(a.records),
            "",
        ),
        level=1,
    )


def _outside_budget(records: list[dict[str, Any]]) -> list[str]:
    """A warning for the report's first lines when cells validated on labels outside their budget
    (``splits.extra_val_per_class``): more labelled examples than budget x classes."""
    outside = [
        r
        for r in records
        if str(r["budget"]) != "all"
        and any(
            sum(s["train_counts"].values()) + s.get("n_val", 0) > int(r["budget"]) * len(s["train_counts"])
            for s in r["seeds"]
        )
    ]
    if not outside:
        return []
    return [
        f"**Validation outside the budget**: {len(outside)} of {len(records)} cells validated on labelled examples "
        "beyond their budget (`splits.extra_val_per_class`): they used more labels than their budget says.",
        "",
    ]


def _labels(a: Analysis) -> Section:
    """The labelled examples each cell used (training and validation together), how many test examples measure
    it, and the strategies that copy another's predictions."""
    summary = a.summary
    classes = {r["cell_key"]: len(r["seeds"][0]["train_counts"]) for r in a.records}
    rows = summary.assign(classes=summary.cell_key.map(classes), labelled=summary.n_train + summary.n_val.fillna(0))
    per_group = rows.groupby(["dataset", "budget"], sort=False).agg(
        classes=("classes", "first"),
        labelled=("labelled", "max"),
        hold_out=("n_val", "max"),
        n_test=("n_test", "first"),
    )
    shown = per_group.reset_index().assign(
        hold_out=lambda d: d.hold_out.map(lambda v: "none" if not v else f"{v:.0f}"),
        labelled=lambda d: d.labelled.map("{:.0f}".format),
    )
    lines = [
        "A budget is every labelled example a cell touches: strategies trained by gradient hold out part of it for "
        "validation (to choose Optuna's trial and the kept step) where that leaves enough per class, else they "
        "take a fixed schedule with their default hyperparameters; the linear probe chooses its C by "
        "cross-validation inside the whole budget. The test examples are a fixed set, the same for every seed.",
        "",
        _md_table(
            shown.rename(
                columns={
                    "labelled": "labelled examples (train + validation)",
                    "hold_out": "of them validation (gradient-trained strategies)",
                    "n_test": "test examples",
                }
            )
        ),
        "",
    ]
    copies = summary[summary.identical_to.astype(bool)]
    if len(copies):
        listed = "; ".join(
            f"{r.dataset}/{r.budget}: {r.strategy} = {r.identical_to}" for r in copies.itertuples(index=False)
        )
        lines += [
            f"**Same predictions**: {len(copies)} of {len(summary)} cells predict exactly what another strategy "
            f"predicts at every seed and count as that result in every comparison ({listed}).",
            "",
        ]
    return Section("Labels and test examples", tuple(lines))


def _how_compared(rope: float, confidence: float) -> str:
    """One paragraph on how two strategies are compared, so a reader knows what every interval and verdict means."""
    level = f"{100 * confidence:g} %"
    return (
        f"Every comparison pairs the two strategies' runs by seed and their predictions by test example. Its {level} "
        "interval counts both sources of error: which seeds were drawn and which test examples (a crossed "
        "random-effects model of the per-example differences, with Satterthwaite's degrees of freedom; "
        "`bench/analysis/comparison.py`). The verdict compares that interval with the region of practical "
        f"equivalence of ±{100 * rope:g} point(s): _better_ or _worse_ when the interval lies beyond it, "
        "_equivalent_ when it lies inside it, _undecided_ otherwise. _P(run wins)_ is the probability of improvement "
        "(Agarwal et al. 2021): the share of (run, run) pairs in which the first strategy's accuracy is the higher. "
        "Strategies whose predictions are identical at every seed are one result, compared once."
    )


def _schedule(records: list[dict[str, Any]]) -> str:
    """How long the final runs trained, read from the records (probes: no gradient steps)."""
    steps = [s["steps"] for r in records for s in r["seeds"] if s.get("steps")]
    probe = "Linear probes (`feature_extraction`, LP-FT's first phase) are L2 logistic regressions on standardised "
    probe += "frozen features solved to convergence by L-BFGS, their C chosen by 5-fold stratified cross-validation "
    probe += "over their training examples from every decade from 1e-4 to 1e2."
    if not steps:
        return probe
    spread = f"{min(steps)} to {max(steps)} optimiser steps (median {np.median(steps):.0f})"
    return f"{probe} The other final runs took {spread}."


def _produced_by(records: list[dict[str, Any]]) -> list[str]:
    """The machine and package versions the cells ran with (one line per distinct environment)."""
    lines = sorted({environment.summary_line(r["environment"]) for r in records if r.get("environment")})
    if not lines:
        return ["Environment: not recorded in these cells."]
    return [f"Produced on: {lines[0]}."] if len(lines) == 1 else ["Produced on:", *(f"- {line}" for line in lines)]


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|"
    rows = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """``61.2 [58.0, 64.1]`` in points (``+1.2 [...]`` signed); the value alone without an interval."""
    if pd.isna(mean):
        return ""
    f = (lambda x: f"{100 * x:+.1f}") if signed else _pct
    return f(mean) if pd.isna(low) else f"{f(mean)} [{f(low)}, {f(high)}]"


def _verdict_counts(verdicts: pd.Series, what: str) -> str:
    counts = verdicts.value_counts()
    parts = [f"{counts[v]} {v}" for v in ("better", "worse", "equivalent", "undecided") if v in counts]
    return f"Of {len(verdicts)} {what}: {', '.join(parts)}."


def _verdicts(a: Analysis) -> Section:
    """Each strategy against the best of its dataset and budget: verdict, difference with its interval, P(run wins)."""
    v, level = a.verdicts, f"{100 * a.confidence:g} %"
    table = pd.DataFrame(
        {
            "dataset": v.dataset,
            "budget": v.budget,
            "strategy": v.strategy,
            "verdict": v.verdict,
            f"test acc % [{level}]": [_interval(*x) for x in zip(v.acc, v.acc_ci_low, v.acc_ci_high, strict=True)],
            f"vs best (pts) [{level}]": [
                "" if b == stats.BEST else _interval(d, lo, hi, signed=True)
                for b, d, lo, hi in zip(v.verdict, v["diff"], v.ci_low, v.ci_high, strict=True)
            ],
            "P(run wins)": v.p_improve.map(_p),
            "runs": v.runs,
            "test examples": v.n_test,
        }
    )
    others = v[v.verdict != stats.BEST]
    return Section(
        "Verdicts",
        (
            "The best strategy at each dataset and budget has the highest mean test accuracy over its runs (backbone "
            "× seed) and test examples. Every other strategy is compared with it. "
            + _how_compared(a.rope, a.confidence),
            "",
            _verdict_counts(others.verdict, "comparisons with the best") if len(others) else "",
            "The same table is verdicts.csv.",
            "",
            _md_table(table),
            "",
        ),
    )


def _against_probe(a: Analysis) -> Section:
    """Every strategy that trains more than the probe against it, cell by cell (``stats.against``)."""
    if not len(a.probe):
        return NOTHING
    level = f"{100 * a.confidence:g} %"
    rows = a.probe[a.probe.strategy != a.roles.get(Role.SCRATCH)]
    table = pd.DataFrame(
        {
            "dataset": rows.dataset,
            "backbone": rows.backbone,
            "budget": rows.budget,
            "strategy": rows.strategy,
            f"vs probe (pts) [{level}]": [
                _interval(d, lo, hi, signed=True)
                for d, lo, hi in zip(rows["diff"], rows.ci_low, rows.ci_high, strict=True)
            ],
            "verdict": rows.verdict,
            "P(run wins)": rows.p_improve.map(_p),
            "seeds": rows.seeds,
        }
    )
    return Section(
        "Against the linear probe",
        (
            f"Does training more than a linear probe on frozen features pay? Every strategy against "
            f"`{a.name(Role.PROBE)}` on the same cell, paired by seed and test example, with the verdicts read as "
            "above (probe.csv has them).",
            "",
            _verdict_counts(rows.verdict, "comparisons with the probe"),
            "",
            _md_table(table),
            "",
        ),
    )


def _across_matrix(a: Analysis) -> Section:
    """Each strategy against the linear probe and against scratch over the matrix (``stats.across_matrix``)."""
    if not a.across:
        return NOTHING
    column = f"difference (pts) [{100 * a.confidence:g} %]"
    parts = [
        part.assign(
            **{
                column: [
                    _interval(d, lo, hi, signed=True)
                    for d, lo, hi in zip(part["diff"], part.ci_low, part.ci_high, strict=True)
                ]
            }
        )[["strategy", "against", "groups", "datasets", column, "verdict"]]
        for part in a.across
    ]
    return Section(
        "Strategies across the matrix",
        (
            f"Each strategy against `{a.name(Role.PROBE)}` and against `{a.name(Role.SCRATCH)}`, its difference "
            "averaged over each dataset's budgets and then over the datasets. A dataset's budgets share their test "
            "examples, so the interval counts each dataset's test examples once, and each (dataset, budget)'s seeds "
            "apart. It speaks for these datasets and budgets only: a handful of datasets cannot speak for datasets "
            "at large.",
            "",
            *(line for part in parts for line in (_md_table(part), "")),
        ),
    )


def _critical_difference(a: Analysis) -> Section:
    """The Friedman test over the strategies across the matrix, and the critical-difference diagram."""
    f, title = a.friedman, "Strategies across the matrix: Friedman test and critical differences"
    if f["reason"]:
        return Section(title, (f"_Not computed: {f['reason']}._", ""))
    k, n, cd = f["k"], f["n_blocks"], f["cd"]
    rejects = f["iman_davenport_p"] < stats.ALPHA
    heading = f"Mean rank of {k} strategies over {n} groups (dataset, backbone, budget); CD = {cd:.2f}"
    return Section(
        title,
        (
            f"Demšar's (2006) protocol over the {n} of {f['n_blocks_total']} groups (dataset, backbone, budget) "
            f"where all {k} strategies ran, each strategy ranked by mean test accuracy within a group (1 = best): "
            f"Friedman's χ² = {f['chi2']:.2f} (df {k - 1}), p = {f['p_value']:.3g}; Iman and Davenport's F = "
            f"{f['iman_davenport_f']:.2f} (df {f['df1']}, {f['df2']}), p = {f['iman_davenport_p']:.3g}. "
            + (
                "The strategies do not all rank alike. "
                if rejects
                else "That all strategies rank alike is not rejected at 0.05, so the bars below only describe. "
            )
            + f"Nemenyi's critical difference at α = 0.05 is {cd:.2f} ranks: strategies joined by a bar do not "
            "differ significantly.",
            "",
            "![critical-difference diagram](critical_difference.png)",
            "",
        ),
        {
            "critical_difference.png": functools.partial(
                plots.cd_diagram, f["mean_ranks"], cd, f["groups"], heading, roles=a.roles
            )
        },
    )


def _gain_over_scratch(a: Analysis) -> Section:
    """The heatmap of every strategy's gain over scratch, and how many gains each verdict got."""
    if not len(a.gains):
        return Section("Gain over scratch", ("_No scratch cells to compare._", ""))
    return Section(
        "Gain over scratch",
        ("![gain heatmap](gain_heatmap.png)", "", _verdict_counts(a.gains.gain_verdict, "gains over scratch"), ""),
        {"gain_heatmap.png": functools.partial(plots.gain_heatmap, a.gains)},
    )


def _cell_rows(a: Analysis) -> pd.DataFrame:
    """The per-cell table: accuracy with its spread and interval, macro-F1, the gain over scratch and its verdict."""
    s, scratch = a.summary, a.roles.get(Role.SCRATCH)
    return pd.DataFrame(
        {
            "dataset": s.dataset,
            "backbone": s.backbone,
            "budget": s.budget,
            "n_train": s.n_train,
            "n_val": s.n_val,
            "n_test": s.n_test,
            "strategy": s.strategy,
            "same predictions as": s.identical_to,
            "seeds": s.seeds,
            "test acc % (mean ± std)": [
                f"{_pct(m)} ± {_pct(sd)}" for m, sd in zip(s.test_acc_mean, s.test_acc_std, strict=True)
            ],
            "95 % CI": [
                f"[{_pct(lo)}, {_pct(hi)}]" for lo, hi in zip(s.test_acc_ci_low, s.test_acc_ci_high, strict=True)
            ],
            "macro-F1 %": s.test_macro_f1_mean.map(_pct),
            "gain (pts) [95 % CI]": [
                "baseline" if name == scratch else _interval(g, lo, hi, signed=True)
                for name, g, lo, hi in zip(s.strategy, s.gain_over_scratch, s.gain_ci_low, s.gain_ci_high, strict=True)
            ],
            "verdict": s.gain_verdict.fillna(""),
            "P(run wins)": s.p_improve.map(_p),
        }
    )


def _cells(a: Analysis) -> Section:
    """Every cell's accuracy and its gain over scratch."""
    return Section(
        "Test accuracy per cell",
        (
            f"Mean ± standard deviation over seeds; the {100 * a.confidence:g} % interval of the accuracy counts the "
            "seeds and the test examples (on the logit scale, mapped back, so it stays within [0, 100 %]). Then "
            "macro-F1, and the paired gain over scratch at the same backbone, dataset and budget with its interval, "
            "its verdict and the share of (run, scratch run) pairs the strategy wins; gains.csv has them too.",
            "",
            _md_table(_cell_rows(a)),
            "",
        ),
    )


def _negative_transfer(a: Analysis) -> Section:
    """The strategies shown worse than scratch."""
    negative = a.gains[a.gains.negative_transfer] if len(a.gains) else a.gains
    if not len(negative):
        text = f"None: no strategy is shown worse than scratch by more than {100 * a.rope:g} point(s)."
    else:
        columns = ["gain", "gain_ci_low", "gain_ci_high"]
        shown = negative[["dataset", "backbone", "budget", "strategy", *columns]]
        text = _md_table(shown.assign(**{c: (100 * shown[c]).round(1) for c in columns}))
    return Section("Negative transfer", (text, ""))


def _below_probe(a: Analysis) -> Section:
    """Strategies that end well below the linear probe on their cell, each with the measured reason."""
    head = (
        f"Strategies whose mean test accuracy ends more than {100 * stats.BELOW_PROBE_MARGIN:.0f} points below "
        f"`{a.name(Role.PROBE)}` on the same cell (paired by seed), with what their final runs measured: the median "
        "validation accuracy of the weights they kept against the probe's, the median optimiser steps and the step "
        "kept. _still improving_: the runs kept their last step, so the step cap cut them short; _validation "
        "misled_: the kept weights validated at least as well as the probe; _fixed schedule_: the budget left no "
        "hold-out, so the runs kept their last weights (the probe's validation accuracy is its cross-validated "
        "one); _fell after step b_: the best validation came at step b, after which training moved away faster "
        "than it improved, and the run ended with that step's weights.",
        "",
    )
    below = a.below
    if not len(below):
        margin = f"{100 * stats.BELOW_PROBE_MARGIN:.0f}"
        return Section(
            "Below the linear probe", (*head, f"None: every strategy ends within {margin} points of the probe.", "")
        )
    whole = lambda x: "" if pd.isna(x) else f"{x:.0f}"  # noqa: E731
    table = pd.DataFrame(
        {
            "dataset": below.dataset,
            "backbone": below.backbone,
            "budget": below.budget,
            "strategy": below.strategy,
            "gap (pts) [95 % CI]": [
                _interval(*x, signed=True) for x in zip(below.gap, below.gap_ci_low, below.gap_ci_high, strict=True)
            ],
            "val acc % (probe's)": [
                f"{'no hold-out' if pd.isna(v) else _pct(v)} ({_pct(p)})"
                for v, p in zip(below.val_acc, below.probe_val_acc, strict=True)
            ],
            "steps": below.steps.map(whole),
            "step kept": below.best_step.map(whole),
            "cause": below.cause,
        }
    )
    return Section("Below the linear probe", (*head, _md_table(table), ""))


def _data_efficiency(a: Analysis) -> Section:
    """Accuracy against the budget, and how many examples per class scratch needs to match each strategy."""
    e = a.equivalence
    shown = e
    if len(e):
        needs = [
            {"=": f"{n:.0f}", "<=": f"<= {n:.0f}", ">": f"more than measured (> {n:.0f})"}[sign]
            for sign, n in zip(e.sign, e.n, strict=True)
        ]
        shown = pd.DataFrame(
            {
                "dataset": e.dataset,
                "backbone": e.backbone,
                "strategy": e.strategy,
                "examples/class": e.per_class.map("{:.0f}".format),
                "test acc %": e.acc_mean.map(_pct),
                "scratch needs (examples/class)": needs,
            }
        )
    return Section(
        "Data efficiency",
        (
            "![accuracy against budget](accuracy_vs_budget.png)",
            "",
            "How many training examples per class scratch needs to match each strategy (scratch's curve interpolated "
            "in log examples per class):",
            "",
            _md_table(shown) if len(shown) else "_Needs scratch at two or more budgets._",
            "",
        ),
        {"accuracy_vs_budget.png": functools.partial(plots.accuracy_curves, a.table, roles=a.roles)},
    )


def _compute(a: Analysis) -> Section:
    """What each strategy spent for its accuracy."""
    if not len(a.spent):
        return Section("Compute", ("_The cells' final runs recorded no seconds (cells of an earlier version)._", ""))
    return Section(
        "Compute",
        (
            "What each strategy spent for its accuracy: per final run, the optimiser steps taken, the step whose "
            "weights it kept (early stopping keeps the best validated ones; 0: its starting weights, e.g. LP-FT's "
            "probe) and its wall seconds, as medians over the strategy's cells; and the minutes of all its cells, "
            "tuning included (`steps` and `best_step` per cell are in summary.csv, the seconds of every run in "
            "MLflow).",
            "",
            "![accuracy against compute](accuracy_vs_compute.png)",
            "",
            _md_table(a.spent_by_strategy),
            "",
        ),
        {"accuracy_vs_compute.png": functools.partial(plots.accuracy_vs_compute, a.spent, roles=a.roles)},
    )


def _ranks(a: Analysis) -> Section:
    """The strategies' mean ranks and their win rates against each other."""
    wins = a.wins.map(lambda x: "" if pd.isna(x) else f"{100 * x:.0f} %")
    return Section(
        "Strategy ranks and win rates",
        (
            "![strategy ranks](ranks.png)",
            "",
            _md_table(a.ranks.assign(mean_rank=a.ranks.mean_rank.round(2))),
            "",
            "Win rate of the row strategy against the column strategy over the groups where both ran (ties count "
            "half):",
            "",
            _md_table(wins.reset_index(names="strategy")),
            "",
        ),
        {"ranks.png": functools.partial(plots.rank_bars, a.ranks, roles=a.roles)},
    )


def _transferability(a: Analysis) -> Section:
    """Transferability scores of each backbone beside the accuracy it reached, and how well they rank backbones."""
    from bench.analysis import transferability_scores

    title = "Transferability scores against realised accuracy"
    if a.transfer is None:
        return Section(title, ("_No scores: no pretrained strategy here, or scoring failed (see the log)._", ""))
    rows, points = a.transfer.rows, a.transfer.points
    n_seeds = rows.groupby(["dataset", "budget", "backbone"]).seed.nunique().max()
    shown = points.assign(
        **{s: points[s].map(lambda x: "" if pd.isna(x) else f"{x:.3f}") for s in transferability_scores.SCORES},
        **{o: points[o].map(_pct) for o in OUTCOMES},
    )[["dataset", "budget", "backbone", *transferability_scores.SCORES, *OUTCOMES, "best_finetune_strategy"]]
    shown.columns = [*shown.columns[:-3], "probe acc %", "best fine-tune acc %", "best fine-tune"]
    no_source = sorted(rows[rows.leep.isna()].backbone.unique())
    lines = [
        "Before any training, each pretrained backbone is scored on the frozen features of the training examples of "
        f"each seed's split ({n_seeds} splits, the means shown; validation and test examples are never read): "
        "LogME (You et al. 2021); LEEP (Nguyen et al. 2020) and NCE (Tran et al. 2019) from the backbone's source "
        "classifier; H-score (Bao et al. 2019) and its shrinkage-regularised form (Ibrahim et al. 2022). Higher "
        "predicts better transfer. H-score sits at its maximum, classes - 1, whenever there are no more training "
        "examples than feature dimensions plus one, so at a few examples per class only the regularised form can "
        "tell backbones apart. Beside the scores: the test accuracy each backbone reached with the linear probe "
        f"(`{a.name(Role.PROBE)}`) and with its best fine-tuning strategy. The scores are in transferability.csv, "
        "one row per split, and in MLflow (`transfer.<score>` on the cell runs, one `transferability/<backbone>` "
        "run per backbone).",
        "",
        _md_table(shown),
        "",
        *(
            [f"LEEP and NCE are not computed for {', '.join(no_source)}: no source classifier.", ""]
            if no_source
            else []
        ),
    ]
    if a.transfer.taus is None:
        lines += [f"_No {a.name(Role.PROBE)} or fine-tuning cells to set the scores against._", ""]
        return Section(title, tuple(lines))
    taus = a.transfer.taus
    by_group = taus[taus.dataset != "all"].groupby(["dataset", "budget"], sort=False).n.max()
    few = [f"{d} at {b} ({n})" for (d, b), n in by_group.items() if n < 3]
    if few:
        lines += [f"Too few backbones to conclude anything (fewer than 3; how many in brackets): {', '.join(few)}.", ""]
    if len(few) == len(by_group):
        return Section(title, tuple(lines))
    correlations, figures = _correlations(a.transfer)
    lines += [
        "How well each score orders the backbones by the accuracy they reached, per dataset and budget, and pooled "
        "over them (`all`: pairs of backbones within the same dataset and budget only, so scores on different "
        "scales do not mix): Kendall's τ-b with its two-sided p-value, and weighted τ (hyperbolic weights: the top "
        "of the ranking counts most) with a two-sided permutation p-value. With 3 backbones a group's smallest "
        "possible p is 0.33, with 4 it is 0.083: a single group shows a sign, not evidence; the pooled rows are "
        "the test.",
        "",
        _md_table(correlations),
        "",
        *(f"![{name[7:-4]} against {OUTCOMES[a.transfer.outcomes[-1]]} accuracy]({name})" for name in figures),
        "",
    ]
    return Section(title, tuple(lines), figures)


def _correlations(t: Transfer) -> tuple[pd.DataFrame, dict[str, Figure]]:
    """The table of each score's rank correlations with each outcome, per group and pooled, and a scatter per score
    against the last outcome (the best fine-tuning where there is one)."""
    from bench.analysis import transferability_scores

    kept = t.taus[t.taus.note == ""]
    correlations = pd.DataFrame(
        [
            {
                "dataset": dataset,
                "budget": budget,
                "score": score,
                "backbones": int(g.n.max()),
                **{
                    f"{label} {OUTCOMES[o]} (p)": _tau(*g.loc[g.outcome == o, [col, f"{col}_p"]].iloc[0])
                    if (g.outcome == o).any()
                    else ""
                    for o in t.outcomes
                    for col, label in (("tau", "τ"), ("weighted_tau", "weighted τ"))
                },
            }
            for (dataset, budget, score), g in kept.groupby(["dataset", "budget", "score"], sort=False)
        ]
    )
    target = t.outcomes[-1]
    figures = {
        f"scores_{s}.png": functools.partial(plots.score_scatter, t.points, s, target, t.taus[t.taus.outcome == target])
        for s in transferability_scores.SCORES
        if kept[kept.score == s].size
    }
    return correlations, figures


def _tau(tau: float, p: float) -> str:
    """τ and its p-value; undefined when every backbone ties on the score or on the accuracy."""
    return "undefined: ties" if pd.isna(tau) else f"{tau:+.2f} ({p:.3f})"


def _published(a: Analysis) -> Section:
    """The best accuracy here beside the published figure of each dataset that has one."""
    r = a.references
    if not len(r):
        return Section("Against published figures", ("_No dataset with a published reference._", ""))
    shown = pd.DataFrame(
        {
            "dataset": r.dataset,
            "best here": r.strategy + " / " + r.backbone,
            "examples/class": r.per_class.map("{:.0f}".format),
            "test acc %": r.acc_mean.map(_pct),
            "published %": r.acc.map(_pct),
            "published method": r.method,
        }
    )
    return Section("Against published figures", (_md_table(shown), ""))


# The report, in order. A section is a function of the analysis; one that has nothing to say returns NOTHING.
SECTIONS: list[Callable[[Analysis], Section]] = [
    _opening,
    _labels,
    _verdicts,
    _against_probe,
    _across_matrix,
    _critical_difference,
    _gain_over_scratch,
    _cells,
    _negative_transfer,
    _below_probe,
    _data_efficiency,
    _compute,
    _ranks,
    _transferability,
    _published,
]


def sections(a: Analysis) -> list[Section]:
    """The report's sections with something to say, in order."""
    return [s for s in (section(a) for section in SECTIONS) if s.title]


def markdown_of(parts: list[Section]) -> str:
    return "\n".join(s.markdown for s in parts)


def write(a: Analysis) -> Path:
    """Write summary.csv, predictions.csv.gz, verdicts.csv, gains.csv, probe.csv, the figures, report.md and
    report.html into results/<experiment>/, and remove the figures an earlier report drew and this one does not;
    return report.md's path."""
    out = paths.experiment_dir(a.experiment)
    a.summary.to_csv(out / "summary.csv", index=False, float_format="%.4f")
    write_predictions(a.records, out / "predictions.csv.gz")
    for name, df in (("verdicts", a.verdicts), ("gains", a.gains), ("probe", a.probe)):
        df.to_csv(out / f"{name}.csv", index=False, float_format="%.4f")
    parts = sections(a)
    figures = {name: draw(out / name) for s in parts for name, draw in s.figures.items()}
    for stale in set(out.glob("*.png")) - set(figures.values()):
        stale.unlink()
    report, text = out / "report.md", markdown_of(parts)
    report.write_text(text)
    report.with_suffix(".html").write_text(_html_page(parts[0].title, text, figures))
    return report


def write_report(
    experiment: str,
    records: list[dict[str, Any]],
    cell_seconds: float | None = None,
    scores: pd.DataFrame | None = None,
    rope: float = stats.ROPE,
    confidence: float = stats.CONFIDENCE,
) -> tuple[Path, pd.DataFrame]:
    """``write`` the report of ``records`` (``analyse`` says what the arguments mean); return report.md's path and
    the summary."""
    a = analyse(experiment, records, cell_seconds, scores, rope, confidence)
    return write(a), a.summary


# Plain and readable in MLflow's artifact viewer and a browser alike; no fonts or anything else to fetch
CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 80rem; margin: 1.5rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; padding-bottom: 0.3rem; border-bottom: 1px solid #d0d7de; }
table { display: block; overflow-x: auto; border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; vertical-align: top; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #f9fafb; }
td { white-space: nowrap; font-variant-numeric: tabular-nums; }  /* wide tables scroll instead */
img { max-width: 100%; height: auto; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85em;
       background: #f6f8fa; padding: 0.1rem 0.3rem; border-radius: 4px; }
"""


def _html_page(title: str, text: str, figures: dict[str, Path]) -> str:
    """The report's markdown ``text``, titled ``title``, as one HTML page that needs no other file: its plots
    inline, its own CSS."""
    body = _inline_images(markdown.markdown(text, extensions=["tables"]), figures)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n"
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _inline_images(html: str, figures: dict[str, Path]) -> str:
    """``html`` with each figure's file name as an image source replaced by its PNG as a data: URI."""
    for name, path in figures.items():
        uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        html = html.replace(f'src="{name}"', f'src="{uri}"')
    return html


def _verdict_line(group: pd.DataFrame) -> str:
    """One (dataset, budget) of ``stats.verdicts`` as a markdown list item: the best strategy with its accuracy and
    interval, and the strategies not shown worse than it."""
    best = group[group.verdict == stats.BEST].iloc[0]
    budget = "all training examples" if best.budget == "all" else f"{best.budget} examples per class"
    open_ = group[group.verdict.isin(["equivalent", "undecided"])]
    return (
        f"- {best.dataset}, {budget}: **{best.strategy}**, test accuracy "
        f"{_interval(best.acc, best.acc_ci_low, best.acc_ci_high)} %; not shown worse: "
        f"{', '.join(f'{n} ({v})' for n, v in zip(open_.strategy, open_.verdict, strict=True)) or 'none'}"
    )


def _best_strategies(a: Analysis) -> Section:
    """The best strategy at each dataset and budget, and those not shown worse than it (the MLflow note's part)."""
    return Section(
        "Best strategies",
        (
            "Best strategy at each dataset and budget (highest mean test accuracy over every backbone and seed, "
            f"with its {100 * a.confidence:g} % interval over seeds and test examples), and the "
            f"strategies not shown worse than it by more than {100 * a.rope:g} point(s):",
            "",
            *(_verdict_line(g) for _, g in a.verdicts.groupby(["dataset", "budget"], sort=False)),
            "",
        ),
    )


def experiment_note(
    exp: Experiment, records: list[dict[str, Any]], summary_run: str, analysis: Analysis | None = None
) -> str:
    """A short markdown summary for the MLflow experiment's description: what ran, the best strategy at each
    dataset and budget (the report's verdicts), and where the full report is (``summary_run``'s artifacts).
    ``analysis`` is the report's, so the note says what the report says; without it the records are analysed."""
    a = analysis or analyse(exp.name, records, rope=exp.statistics.rope, confidence=exp.statistics.confidence)
    seeds = f"{exp.seeds.min} to {exp.seeds.most}" if exp.seeds.races else str(exp.seeds.min)
    return "\n".join(
        [
            f"**{exp.name}**" + (f": {exp.description}" if exp.description else ""),
            "",
            f"- backbones: {', '.join(bb.label for bb in exp.backbones)}",
            f"- datasets: {', '.join(ds.name for ds in exp.datasets)}",
            f"- strategies: {', '.join(exp.strategies)}",
            f"- budgets (training examples per class): {', '.join(map(str, exp.budgets))}",
            f"- {seeds} seeds and {exp.tuning.n_trials} Optuna trials per cell; {len(a.records)} cells finished",
            "",
            *_best_strategies(a).lines,
            f"The full report: `report.html` in the artifacts of the run `{summary_run}` (`stage=summary`), with "
            "report.md, summary.csv and the plots.",
        ]
    )


def print_summary(df: pd.DataFrame, console: Console, title: str) -> None:
    """The summary's cells as a table on the console: accuracy, scratch's, and the gain over it."""
    scratch = baselines(df.strategy.unique()).get(Role.SCRATCH)
    table = Table(title=title)
    for col in ("dataset", "backbone", "budget", "strategy", "test acc % (mean ± std)", "scratch %", "gain (pts)"):
        table.add_column(col, justify="right" if "%" in col or col in ("budget", "gain (pts)") else "left")
    for row in df.itertuples():
        gain = "" if pd.isna(row.gain_over_scratch) else f"{100 * row.gain_over_scratch:+.1f}"
        gain = "baseline" if row.strategy == scratch else gain
        table.add_row(
            row.dataset,
            row.backbone,
            str(row.budget),
            row.strategy,
            f"{_pct(row.test_acc_mean)} ± {_pct(row.test_acc_std)}",
            _pct(row.scratch_acc_mean),
            gain,
        )
    console.print(table)
