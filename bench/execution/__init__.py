"""Where cells run: in this process, in a pool of local worker processes, or as tasks on a Ray cluster; claims
make each run exactly once."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from rich.console import Console

from bench import core_locks, data, environment
from bench.config import Experiment
from bench.execution import cluster
from bench.execution.pool import WorkerError, run_pool
from bench.execution.progress import Display
from bench.execution.worker import work
from bench.matrix import Cell
from bench.stores import Stores
from bench.training_run import pick_device

__all__ = ["WorkerError", "execute", "ray_cluster", "workers_for"]


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


def ray_slots(exp: Experiment, resources: dict[str, float], cells: int) -> int:
    """How many cells a Ray cluster with ``resources`` trains at once, at most (by CPUs)."""
    return max(1, min(cells, int(resources.get("CPU", 1) // exp.training.threads)))


@contextlib.contextmanager
def ray_cluster(stores: Stores, address: str) -> Iterator[dict[str, float]]:
    """The Ray cluster at ``address`` (``local``: started here) for the block, once it is known that every node
    can reach ``stores``; yields its resources (``CPU``, ``GPU``, ...)."""
    with cluster.connect(address) as resources:
        cluster.check_stores(stores.tracking, stores.optuna, cluster.remote_nodes())
        yield resources


def execute(
    exp: Experiment,
    stores: Stores,
    cells: list[Cell],
    total: int,
    workers: int,
    console: Console,
    loaded: dict[str, data.LoadedDataset],
    ray: dict[str, float] | None = None,
) -> int:
    """Train ``cells`` (of ``total`` in the matrix), with their results in ``stores``, on ``workers`` workers, or
    as tasks on the Ray cluster whose resources are ``ray`` (``workers`` then sizes the display); return how many
    failed."""
    run_id = secrets.token_hex(8)
    core_locks.keep(0 if ray is not None else workers * exp.training.threads)  # the cores held since start-up, for them
    try:
        with Display(console, total, total - len(cells), workers) as display:
            if ray is not None:
                cluster.run_on_ray(exp, stores, cells, display, run_id, ray)
            elif workers == 1:
                work(exp, stores, cells, 0, display.handle, run_id, loaded)
            else:
                run_pool(exp, stores, cells, workers, display, run_id, loaded)
    finally:
        core_locks.keep(0)
    return display.failures
