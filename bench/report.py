"""Tables from finished results: each cell's accuracy over seeds beside training from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from bench import paths

COLUMNS = [
    "modality",
    "dataset",
    "backbone",
    "budget",
    "n_train",
    "strategy",
    "seeds",
    "test_acc_mean",
    "test_acc_std",
    "scratch_acc_mean",
    "gain_over_scratch",
    "trials_complete",
    "trials_pruned",
    "best_hp",
    "cell_key",
]


def summarize(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A row per cell, with the scratch result at the same backbone, dataset and budget and the gain over it."""
    df = pd.DataFrame(records)
    # real training examples (seed 0): fewer than budget x classes when a class is short
    df["n_train"] = df["seeds"].map(lambda seeds: sum(seeds[0]["train_counts"].values()))
    df["seeds"] = df["seeds"].map(len)
    df["best_hp"] = df["best_hp"].map(
        lambda hp: " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hp.items()))
    )
    group = ["dataset", "backbone", "budget"]
    scratch = df[df.strategy == "scratch"].set_index(group)["test_acc_mean"].rename("scratch_acc_mean")
    df = df.join(scratch, on=group)
    df["gain_over_scratch"] = df["test_acc_mean"] - df["scratch_acc_mean"]
    return df[COLUMNS]


def write_summary(experiment: str, records: list[dict[str, Any]]) -> tuple[pd.DataFrame, Path]:
    df = summarize(records)
    path = paths.experiment_dir(experiment) / "summary.csv"
    df.to_csv(path, index=False, float_format="%.4f")
    return df, path


def print_summary(df: pd.DataFrame, console: Console, title: str) -> None:
    table = Table(title=title)
    for col in ("dataset", "backbone", "budget", "strategy", "test acc % (mean ± std)", "scratch %", "gain (pts)"):
        table.add_column(col, justify="right" if "%" in col or col in ("budget", "gain (pts)") else "left")
    for row in df.itertuples():
        gain = "" if pd.isna(row.gain_over_scratch) else f"{100 * row.gain_over_scratch:+.1f}"
        gain = "baseline" if row.strategy == "scratch" else gain
        scratch = "" if pd.isna(row.scratch_acc_mean) else f"{100 * row.scratch_acc_mean:.1f}"
        table.add_row(
            row.dataset,
            row.backbone,
            str(row.budget),
            row.strategy,
            f"{100 * row.test_acc_mean:.1f} ± {100 * row.test_acc_std:.1f}",
            scratch,
            gain,
        )
    console.print(table)
