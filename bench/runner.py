"""The matrix runner: expand the experiment, skip finished cells, tune and retrain the rest, collect results."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.text import Text

from bench import data, execution, racing, results
from bench.analysis import stats
from bench.config import Experiment
from bench.matrix import Cell, expand
from bench.stores import Stores, prepare
from bench.tracking import Tracker


def run_experiment(
    exp: Experiment, stores: Stores, console: Console, workers: int | None = None, ray: str | None = None
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``exp``, with its results in ``stores``, on ``workers`` local workers (default:
    as many as the cores hold), or on the Ray cluster at ``ray`` (``local``: one started here), and return the
    records of all finished cells, in matrix order.

    The stores are created first, once, by this process. Any number of ``bench run`` processes may share a results
    folder: each cell is claimed before it is trained. A cell that fails (every trial diverged) is reported and
    skipped; the rest of the matrix still runs.
    """
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(execution.ray_cluster(stores, ray)) if ray else None
        return _run_cells(exp, stores, console, workers, cluster)


def _longest_first(cells: list[Cell]) -> list[Cell]:
    """Cells of larger budgets (``all`` the largest) first, in matrix order otherwise: they train longest, so
    workers that take them first do not end the matrix with one of them training a long cell while the others
    wait. Each cell's result is the same whoever trains it, and whenever."""
    return sorted(cells, key=lambda c: stats.budget_order(c.budget), reverse=True)  # sorted stays stable


def _run_cells(
    exp: Experiment, stores: Stores, console: Console, workers: int | None, cluster: dict[str, float] | None
) -> list[dict[str, Any]]:
    for line in prepare(stores.tracking, stores.optuna):
        console.print(Text(line, style="yellow"))
    cells = expand(exp)
    loaded = {name: data.DATASETS.get(name).load() for name in dict.fromkeys(c.dataset for c in cells)}
    cells = expand(exp)  # datasets downloaded just now change their cells' keys
    Tracker(stores.tracking, exp.name)  # the experiment exists before any worker starts
    todo = _longest_first([c for c in cells if not results.is_finished(exp.name, c)])
    for cell in cells:
        if cell not in todo:
            console.print(Text(f"finished earlier: {cell.run_name}", style="dim"))
    failures = _train(exp, stores, todo, len(cells), console, workers, cluster, loaded)
    records = _finished(exp, cells)
    # racing: the cells of contests still open get more seeds, round after round, until none asks for more
    while want := racing.more_seeds(records, exp):
        cells = [replace(c, seeds=want.get(c.key, c.seeds)) for c in cells]
        todo = _longest_first([c for c in cells if c.key in want])
        console.print(
            Text(
                f"racing: {len(todo)} cell(s) of contests still undecided get more seeds (up to {exp.seeds.most})",
                style="cyan",
            )
        )
        before = sum(len(r["seeds"]) for r in records)
        failures += _train(exp, stores, todo, len(todo), console, workers, cluster, loaded)
        records = _finished(exp, cells)
        if sum(len(r["seeds"]) for r in records) == before:  # every cell asked for failed: the race ends here
            break
    if failures:
        console.print(
            Text(f"{failures} cell(s) failed (see above); the finished cells are kept and reported", style="red")
        )
    return records


def _finished(exp: Experiment, cells: list[Cell]) -> list[dict[str, Any]]:
    return [r for r in (results.load_cell(exp.name, c) for c in cells) if r is not None]


def _train(
    exp: Experiment,
    stores: Stores,
    todo: list[Cell],
    total: int,
    console: Console,
    workers: int | None,
    cluster: dict[str, float] | None,
    loaded: dict[str, data.LoadedDataset],
) -> int:
    """Train ``todo`` (of ``total`` cells in this round) where the run was asked to; return how many failed."""
    if not todo:
        return 0
    threads = f"{exp.training.threads} torch thread{'s' if exp.training.threads > 1 else ''} each"
    if cluster is not None:
        n = execution.ray_slots(exp, cluster, len(todo))
        where = f"the Ray cluster ({cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs), {threads}"
    else:
        n = execution.workers_for(exp, workers, len(todo))
        where = f"{n} worker(s), {threads}"
    console.print(Text(f"{len(todo)} cell(s) to train on {where}"))
    return execution.execute(exp, stores, todo, total, n, console, loaded, cluster)
