"""``--workers N``: N processes on this machine share the matrix through the claims; this process shows them.

Workers are spawned (fresh interpreters: no inherited torch thread pools or open database handles) and report
over a queue. A worker that dies (killed, out of memory) is replaced, and its cell, whose claim died with it, is
taken over. An error a worker cannot recover from (disk full) stops the pool and is raised here once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import traceback
from typing import Any

from bench.config import Experiment
from bench.execution.progress import Display
from bench.execution.worker import Event, work
from bench.matrix import Cell

FATAL = 3  # a worker's exit code after it reported an error: not replaced
INTERRUPTED = (130, 143)
STOP_SECONDS = 30.0


class WorkerError(RuntimeError):
    """A worker stopped on an error; the message is the worker's."""


def run_pool(exp: Experiment, cells: list[Cell], workers: int, display: Display, run_id: str) -> None:
    """Run ``cells`` on ``workers`` processes until every one is finished or failed."""
    ctx = mp.get_context("spawn")
    events: Any = ctx.Queue()
    procs = {i: _start(ctx, exp, cells, i, events, run_id) for i in range(workers)}
    replaced = 0
    try:
        while procs:
            try:
                _handle(events.get(timeout=0.5), display)
            except queue.Empty:
                pass
            for i, proc in list(procs.items()):
                if proc.exitcode is None:
                    continue
                if proc.exitcode == 0:
                    del procs[i]
                    continue
                _drain(events, display)
                if proc.exitcode in INTERRUPTED:  # Ctrl-C or SIGTERM reached the workers: the run stops
                    raise KeyboardInterrupt
                if proc.exitcode == FATAL:
                    raise WorkerError(display.error or f"worker {i + 1} stopped on an error")
                replaced += 1
                if replaced > 2 * workers:
                    raise WorkerError(f"workers keep dying (last exit code {proc.exitcode}); see the messages above")
                display.note(f"worker {i + 1} died (exit code {proc.exitcode}); a new one takes its cell over")
                procs[i] = _start(ctx, exp, cells, i, events, run_id)
        _drain(events, display)
    finally:
        _stop(procs.values())


def _handle(event: Event, display: Display) -> None:
    if event.kind == "error":
        display.error = event.text
    else:
        display.handle(event)


def _drain(events: Any, display: Display) -> None:
    while True:
        try:
            _handle(events.get_nowait(), display)
        except queue.Empty:
            return


def _start(ctx: Any, exp: Experiment, cells: list[Cell], worker: int, events: Any, run_id: str) -> Any:
    proc = ctx.Process(target=_worker_main, args=(exp, cells, worker, events, run_id), name=f"bench-worker-{worker}")
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


def _worker_main(exp: Experiment, cells: list[Cell], worker: int, events: Any, run_id: str) -> None:
    """A worker process: Ctrl-C and SIGTERM end its runs as KILLED; an error is reported, not printed."""
    from bench import errors

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        work(exp, cells, worker, events.put, run_id)
    except KeyboardInterrupt:
        os._exit(130)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which prints it once
        events.put(Event("error", worker, errors.explain(err) or "".join(traceback.format_exception(err))))
        events.close()
        events.join_thread()
        os._exit(FATAL)


def _interrupt(signum: int, frame: object) -> None:
    """The first SIGINT or SIGTERM stops the worker cleanly; further ones are ignored while it cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
