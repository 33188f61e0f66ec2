"""A worker: take cores of this machine, claim an unfinished cell, train it, save its record; until none is left.

The same loop runs in the ``bench run`` process itself or in each of ``--workers N`` processes, and any number
of ``bench run`` processes on one results folder split the matrix through the claims. A cell that another
worker holds is waited for, and taken over if its holder dies, so every worker returns only when every cell is
finished or failed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from bench import core_locks, data, environment, results
from bench.cell import done_line, run_cell
from bench.config import Experiment
from bench.execution import claims as leases
from bench.matrix import Cell
from bench.stores import Stores
from bench.tracking import Tracker
from bench.training_run import CellTrainer, pick_device
from bench.tuning import TuningFailedError

WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Event:
    """What a worker tells the display: ``status`` (where it is), ``done`` or ``failed`` (a cell ended)."""

    kind: str
    worker: int
    text: str


def work(
    exp: Experiment,
    stores: Stores,
    cells: list[Cell],
    worker: int,
    emit: Callable[[Event], None],
    run_id: str,
    loaded: dict[str, data.LoadedDataset] | None = None,
    hold: Callable[[int, Callable[[str], None]], AbstractContextManager[object]] = core_locks.hold,
    where: dict[str, str] | None = None,
) -> None:
    """Train every cell of ``cells`` that nobody has finished, failed in run ``run_id``, or holds alive, with the
    claims, studies and runs in ``stores``.

    ``hold(threads, say)`` gives the worker its share of the machine before each claim: by default this
    machine's cores (``core_locks.hold``); a Ray task has its CPUs from Ray already. ``where`` (a Ray node and its
    share of it) is recorded with each cell's environment."""
    claims = leases.for_store(stores.claims)
    tracker = Tracker(stores.tracking, exp.name)
    loaded = {} if loaded is None else loaded
    where = where or {}

    def say(msg: str) -> None:
        emit(Event("status", worker, msg))

    def unsettled() -> list[Cell]:
        return [c for c in cells if not _settled(exp, c, run_id)]

    def loop() -> None:
        while pending := unsettled():
            # cores first (a worker waiting for them holds no cell), kept from one cell to the next
            with hold(exp.training.threads, say):
                while (cell := next((c for c in pending if claims.try_claim(c.key)), None)) is not None:
                    try:
                        if not _settled(exp, cell, run_id):  # it may have finished between the look and the claim
                            train = functools.partial(
                                _train, exp, stores, cell, worker, emit, run_id, tracker, loaded, where
                            )
                            if (interrupt := tracker.stopped(train)) is not None:
                                # its runs are ended before the claim goes, for whoever waits for it; and a run
                                # the interrupt cut off while MLflow was starting it, which only the store knows
                                tracker.end_orphans(cell, set(results.saved_seeds(exp.name, cell, cell.seeds)))
                                raise interrupt
                    finally:
                        claims.release(cell.key)
                    pending = unsettled()
            if pending:  # every one left is held by another worker: its cores go to whoever can use them
                say(f"waiting for {len(pending)} cell(s) that other workers are training")
                time.sleep(WAIT_SECONDS)

    if (interrupt := tracker.stopped(loop)) is not None:
        raise interrupt


def _settled(exp: Experiment, cell: Cell, run_id: str) -> bool:
    return results.is_finished(exp.name, cell) or results.failed_in(exp.name, cell, run_id)


def _train(
    exp: Experiment,
    stores: Stores,
    cell: Cell,
    worker: int,
    emit: Callable[[Event], None],
    run_id: str,
    tracker: Tracker,
    loaded: dict[str, data.LoadedDataset],
    where: dict[str, str],
) -> None:
    def say(msg: str) -> None:
        emit(Event("status", worker, f"{cell.run_name}  {msg}"))

    if cell.dataset not in loaded:
        loaded[cell.dataset] = data.DATASETS.get(cell.dataset).load()
    env = environment.describe(str(pick_device(exp.training.device))) | where
    try:
        record = run_cell(CellTrainer(cell, exp, loaded[cell.dataset], say), tracker, stores.optuna, env)
    except TuningFailedError as err:
        results.save_failure(exp.name, cell, run_id, str(err))
        emit(Event("failed", worker, str(err)))
        return
    results.save_cell(exp.name, cell, record)
    emit(Event("done", worker, done_line(cell, record)))
