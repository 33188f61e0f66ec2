"""The matrix runner: expand the experiment, skip finished cells, tune and retrain the rest, collect results."""

from __future__ import annotations

import contextlib
from typing import Any

from rich.console import Console
from rich.text import Text

from bench import data, execution, results, stats, stores
from bench.config import Experiment
from bench.matrix import Cell, expand
from bench.tracking import Tracker, tracking_uri
from bench.tuning import storage_url


def run_experiment(
    exp: Experiment, console: Console, workers: int | None = None, ray: str | None = None
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``exp`` on ``workers`` local workers (default: as many as the cores hold), or
    on the Ray cluster at ``ray`` (``local``: one started here), and return the records of all finished cells, in
    matrix order.

    The stores are created first, once, by this process. Any number of ``bench run`` processes may share a results
    folder: each cell is claimed before it is trained. A cell that fails (every trial diverged) is reported and
    skipped; the rest of the matrix still runs.
    """
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(execution.ray_cluster(exp, ray)) if ray else None
        return _run_cells(exp, console, workers, cluster)


def _longest_first(cells: list[Cell]) -> list[Cell]:
    """Cells of larger budgets (``all`` the largest) first, in matrix order otherwise: they train longest, so
    workers that take them first do not end the matrix with one of them training a long cell while the others
    wait. Each cell's result is the same whoever trains it, and whenever."""
    return sorted(cells, key=lambda c: stats.budget_order(c.budget), reverse=True)  # sorted stays stable


def _run_cells(
    exp: Experiment, console: Console, workers: int | None, cluster: dict[str, float] | None
) -> list[dict[str, Any]]:
    for line in stores.prepare(tracking_uri(exp.tracking_uri), storage_url(exp.optuna_storage)):
        console.print(Text(line, style="yellow"))
    cells = expand(exp)
    loaded = {name: data.DATASETS.get(name).load() for name in dict.fromkeys(c.dataset for c in cells)}
    cells = expand(exp)  # datasets downloaded just now change their cells' keys
    Tracker(tracking_uri(exp.tracking_uri), exp.name)  # the experiment exists before any worker starts
    todo = _longest_first([c for c in cells if not results.is_finished(exp.name, c)])
    for cell in cells:
        if cell not in todo:
            console.print(Text(f"finished earlier: {cell.run_name}", style="dim"))
    threads = f"{exp.training.threads} torch thread{'s' if exp.training.threads > 1 else ''} each"
    if cluster is not None:
        n = execution.ray_slots(exp, cluster, len(todo))
        where = f"the Ray cluster ({cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs), {threads}"
    else:
        n = execution.workers_for(exp, workers, len(todo))
        where = f"{n} worker(s), {threads}"
    if todo:
        console.print(Text(f"{len(todo)} cell(s) to train on {where}"))
    failures = execution.execute(exp, todo, len(cells), n, console, loaded, cluster) if todo else 0
    records = [r for r in (results.load_cell(exp.name, c) for c in cells) if r is not None]
    if failures:
        console.print(
            Text(f"{failures} cell(s) failed (see above); the finished cells are kept and reported", style="red")
        )
    return records
