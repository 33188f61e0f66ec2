"""The report written: summary.csv and the other tables, the figures, report.md, the same report as one
self-contained report.html, the short note for the MLflow experiment's description, and the summary printed in the
terminal. The last of three steps (``findings`` -> ``sections`` -> ``report``): it renders, it computes nothing."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import markdown
import pandas as pd
from rich.console import Console
from rich.table import Table

from bench import paths
from bench.analysis import stats
from bench.analysis.findings import Analysis, analyse
from bench.analysis.sections import best_strategies, markdown_of, percent, sections
from bench.strategies import Role, baselines

if TYPE_CHECKING:
    from bench.config import Experiment


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
            *best_strategies(a).lines,
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
            f"{percent(row.test_acc_mean)} ± {percent(row.test_acc_std)}",
            percent(row.scratch_acc_mean),
            gain,
        )
    console.print(table)
