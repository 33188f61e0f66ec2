"""The report's sections: each function of ``SECTIONS`` formats one part of the report from an ``Analysis`` (its
markdown, and the figures it shows, drawn when the report is written). A new section is one function and one entry
in ``SECTIONS``. The second of the report's three steps (``findings`` -> ``sections`` -> ``report``)."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench import environment
from bench.analysis import plots, stats
from bench.analysis.findings import OUTCOMES, Analysis, Transfer
from bench.strategies import Role

if TYPE_CHECKING:
    pass


def percent(x: float) -> str:
    return "" if pd.isna(x) else f"{100 * x:.1f}"


def _p(x: float) -> str:
    return "" if pd.isna(x) else f"{x:.3f}"


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
    f = (lambda x: f"{100 * x:+.1f}") if signed else percent
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
                f"{percent(m)} ± {percent(sd)}" for m, sd in zip(s.test_acc_mean, s.test_acc_std, strict=True)
            ],
            "95 % CI": [
                f"[{percent(lo)}, {percent(hi)}]" for lo, hi in zip(s.test_acc_ci_low, s.test_acc_ci_high, strict=True)
            ],
            "macro-F1 %": s.test_macro_f1_mean.map(percent),
            "gain (pts) [95 % CI]": [
                "baseline" if name == scratch else _interval(g, lo, hi, signed=True)
                for name, g, lo, hi in zip(s.strategy, s.gain_over_scratch, s.gain_ci_low, s.gain_ci_high, strict=True)
            ],
            "verdict": s.gain_verdict.astype(object).fillna(""),
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
                f"{'no hold-out' if pd.isna(v) else percent(v)} ({percent(p)})"
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
                "test acc %": e.acc_mean.map(percent),
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
        **{o: points[o].map(percent) for o in OUTCOMES},
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
            "test acc %": r.acc_mean.map(percent),
            "published %": r.acc.map(percent),
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


def best_strategies(a: Analysis) -> Section:
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
