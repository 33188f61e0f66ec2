"""``--workers N``: N workers on this machine share the matrix through the claims; this process is one of them,
and shows them all.

The others are spawned (fresh interpreters: no inherited torch thread pools or open database handles) and report
over a queue. A worker that dies (killed, out of memory) is replaced, and its cell, whose claim died with it, is
taken over. An error a worker cannot recover from (a full disk, a bug) stops every worker, as it would stop a
single process, and is raised here once.
"""

from __future__ import annotations

import _thread
import contextlib
import multiprocessing as mp
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from bench import core_locks, data
from bench.config import Experiment
from bench.execution.progress import Display
from bench.execution.worker import Event, work
from bench.matrix import Cell
from bench.stores import Stores

FATAL = 3  # a worker's exit code after it reported an error: not replaced
INTERRUPTED = (130, 143)
STOP_SECONDS = 30.0


class WorkerError(RuntimeError):
    """A worker stopped on an error; the message is the worker's."""


def run_pool(
    exp: Experiment,
    stores: Stores,
    cells: list[Cell],
    workers: int,
    display: Display,
    run_id: str,
    loaded: dict[str, data.LoadedDataset],
) -> None:
    """Run ``cells`` on ``workers`` workers until every one is finished or failed: this process is the first
    (it starts training at once, with its datasets loaded), spawned processes are the others."""
    ctx = mp.get_context("spawn")
    events: Any = ctx.Queue()
    procs = {i: _start(ctx, exp, stores, cells, i, events, run_id) for i in range(1, workers)}
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(ctx, exp, stores, cells, procs, events, run_id, display, stop), daemon=True
    )
    watcher.start()
    try:
        work(exp, stores, cells, 0, display.handle, run_id, loaded)
        watcher.join()  # the others end once every cell is settled, as this worker's loop did
    except KeyboardInterrupt:
        if display.error is None:
            raise
    finally:
        stop.set()
        watcher.join()
        _stop(list(procs.values()))
    if display.error:
        raise WorkerError(display.error)


def _watch(
    ctx: Any,
    exp: Experiment,
    stores: Stores,
    cells: list[Cell],
    procs: dict[int, Any],
    events: Any,
    run_id: str,
    display: Display,
    stop: threading.Event,
) -> None:
    """Show the spawned workers' events and replace those that die, until all have ended or ``stop``. A worker's
    error interrupts this process's own worker (as Ctrl-C would), so that every worker stops."""
    replaced = 0
    while procs and not stop.is_set():
        _drain(events, display, timeout=0.5)
        for i, proc in list(procs.items()):
            if proc.exitcode is None:
                continue
            del procs[i]
            if proc.exitcode in (0, *INTERRUPTED):  # done, or stopped by Ctrl-C or SIGTERM
                continue
            replaced += 1
            if proc.exitcode == FATAL or replaced > 2 * len(cells):
                _drain(events, display)
                display.error = display.error or f"workers keep dying (last exit code {proc.exitcode})"
                _thread.interrupt_main()
                return
            display.note(f"worker {i + 1} died (exit code {proc.exitcode}); a new one takes its cell over")
            procs[i] = _start(ctx, exp, stores, cells, i, events, run_id)
    _drain(events, display)


def _drain(events: Any, display: Display, timeout: float = 0.0) -> None:
    """Handle the queued events, waiting up to ``timeout`` for the first."""
    try:
        event = events.get(timeout=timeout) if timeout else events.get_nowait()
        while True:
            if event.kind == "error":
                display.error = event.text
            elif event.kind == "ready":  # a spawned worker is about to take its cores: this process held them
                core_locks.hand_over(int(event.text))
            else:
                display.handle(event)
            event = events.get_nowait()
    except queue.Empty:
        return


def _start(ctx: Any, exp: Experiment, stores: Stores, cells: list[Cell], worker: int, events: Any, run_id: str) -> Any:
    proc = ctx.Process(
        target=_worker_main, args=(exp, stores, cells, worker, events, run_id), name=f"bench-worker-{worker}"
    )
    proc.start()
    return proc


def _stop(procs: Any) -> None:
    """Ask live workers to stop as after Ctrl-C (their runs end KILLED), and wait for them."""
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        os.kill(p.pid, signal.SIGTERM)
    for p in alive:
        p.join(STOP_SECONDS)
        if p.is_alive():
            p.kill()


def _worker_main(exp: Experiment, stores: Stores, cells: list[Cell], worker: int, events: Any, run_id: str) -> None:
    """A worker process: Ctrl-C and SIGTERM end its runs as KILLED; an error is reported, not printed."""
    from bench import errors

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        work(exp, stores, cells, worker, events.put, run_id, hold=_handed_over(events, worker))
        code = 0
    except KeyboardInterrupt:
        os._exit(130)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which prints it once
        events.put(Event("error", worker, errors.explain(err) or "".join(traceback.format_exception(err))))
        code = FATAL
    events.close()
    events.join_thread()  # every event is with the parent, which waits for this exit before its report:
    os._exit(code)  # no 2 s of tearing down torch and MLflow's modules first


def _handed_over(events: Any, worker: int) -> Callable[[int, Callable[[str], None]], AbstractContextManager[int]]:
    """``core_locks.hold`` for a spawned worker: before its first cores, it tells the parent, which has held them for
    it since its start-up and lets them go."""
    ready = False

    @contextlib.contextmanager
    def hold(threads: int, say: Callable[[str], None]) -> Iterator[int]:
        nonlocal ready
        if not ready:
            events.put(Event("ready", worker, str(threads)))
            ready = True
        with core_locks.hold(threads, say) as held:
            yield held

    return hold


def _interrupt(signum: int, frame: object) -> None:
    """The first SIGINT or SIGTERM stops the worker cleanly; further ones are ignored while it cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
