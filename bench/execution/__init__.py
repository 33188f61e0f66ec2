"""Where cells run: in this process, or in a pool of local worker processes; claims make each run exactly once."""

from __future__ import annotations

import secrets

from rich.console import Console

from bench import data, environment
from bench.config import Experiment
from bench.execution.pool import WorkerError, run_pool
from bench.execution.progress import Display
from bench.execution.worker import work
from bench.matrix import Cell
from bench.trainer import pick_device

__all__ = ["WorkerError", "execute", "workers_for"]


CELLS_PER_WORKER = 4  # a spawned worker takes about 5 s to start: by default, each gets at least this many cells


def workers_for(exp: Experiment, requested: int | None, cells: int) -> int:
    """How many workers to run: as asked, else as many as the cores hold at ``training.threads`` each (one on a
    GPU) with at least ``CELLS_PER_WORKER`` cells each; never more threads in total than cores, nor more
    workers than cells."""
    fit = max(1, environment.available_cores() // exp.training.threads)
    if requested is None:
        gpu = pick_device(exp.training.device).type == "cuda"
        requested = 1 if gpu else min(fit, cells // CELLS_PER_WORKER)
    return max(1, min(requested, fit, cells))


def execute(
    exp: Experiment,
    cells: list[Cell],
    total: int,
    workers: int,
    console: Console,
    loaded: dict[str, data.LoadedDataset],
) -> int:
    """Train ``cells`` (of ``total`` in the matrix) on ``workers`` workers; return how many failed."""
    run_id = secrets.token_hex(8)
    with Display(console, total, total - len(cells), workers) as display:
        if workers == 1:
            work(exp, cells, 0, display.handle, run_id, loaded)
        else:
            run_pool(exp, cells, workers, display, run_id, loaded)
    return display.failures
