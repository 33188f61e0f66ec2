"""How much an experiment's answers move when it runs again with other draws (e.g. another sampler seed).

Two runs of one matrix are compared cell by cell and verdict by verdict:

- a cell *holds* when the second run's mean test accuracy lies inside the first run's 95 % interval of it
  (``stats.cells``), i.e. it moved by less than its own interval;
- a verdict (each strategy against the best of its dataset and budget: best, worse, equivalent or undecided,
  ``stats.verdicts``) *holds* when both runs give it, or when one run calls the strategy the best and the other
  does not call it worse: the runs may order two strategies that their seeds cannot tell apart differently, but
  never call one of them worse than the other's best.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import comparison, stats

CELL = ["dataset", "backbone", "budget", "strategy"]


def records_in(folder: Path) -> list[dict[str, Any]]:
    """The finished cells' records of one run: ``folder`` is ``<results>/<experiment>``, holding ``cells/``."""
    files = sorted((folder / "cells").glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{folder}: no finished cells (expected {folder}/cells/*.json from a `bench run`)")
    records = [json.loads(f.read_text()) for f in files]
    seen: dict[tuple, str] = {}
    for f, r in zip(files, records, strict=True):
        key = tuple(str(r[k]) for k in CELL)
        if key in seen:
            raise ValueError(
                f"{folder}: two finished runs of {'/'.join(key)} ({seen[key]} and {f.name}), from different "
                "versions of the experiment; compare folders that each hold one run of it"
            )
        seen[key] = f.name
    return records


@dataclass(frozen=True)
class Stability:
    cells: pd.DataFrame  # a row per cell both runs finished: both means, the first run's interval, ``holds``
    verdicts: pd.DataFrame  # a row per (dataset, budget, strategy): both runs' verdicts, ``holds``

    @property
    def cells_holding(self) -> float:
        return float(self.cells.holds.mean()) if len(self.cells) else float("nan")


def compare(
    first: list[dict[str, Any]],
    second: list[dict[str, Any]],
    rope: float = stats.ROPE,
    confidence: float = stats.CONFIDENCE,
) -> Stability:
    """Cells and verdicts of ``second`` against ``first`` (cells only one run finished are left out)."""
    a, b = stats.cells(first, confidence), stats.cells(second, confidence)
    joined = a.merge(b, on=CELL, suffixes=("_first", "_second"))
    cells = pd.DataFrame(
        {
            **{k: joined[k] for k in CELL},
            "acc_first": joined.acc_mean_first,
            "ci_low": joined.acc_ci_low_first,
            "ci_high": joined.acc_ci_high_first,
            "acc_second": joined.acc_mean_second,
            "moved": joined.acc_mean_second - joined.acc_mean_first,
        }
    )
    cells["holds"] = (cells.acc_second >= cells.ci_low) & (cells.acc_second <= cells.ci_high)
    va = stats.verdicts(stats.distinct(first), rope, confidence)
    vb = stats.verdicts(stats.distinct(second), rope, confidence)
    v = va.merge(vb, on=["dataset", "budget", "strategy"], suffixes=("_first", "_second"))
    verdicts = pd.DataFrame(
        {
            "dataset": v.dataset,
            "budget": v.budget,
            "strategy": v.strategy,
            "first": v.verdict_first,
            "second": v.verdict_second,
        }
    )
    best_and_open = [
        stats.BEST in (f, s) and comparison.WORSE not in (f, s)
        for f, s in zip(verdicts["first"], verdicts["second"], strict=True)
    ]
    verdicts["holds"] = (verdicts["first"] == verdicts["second"]).to_numpy() | np.array(best_and_open, dtype=bool)
    return Stability(cells, verdicts)
