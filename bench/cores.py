"""Cores of this machine, shared by every transferbench process on it: a worker trains only on cores it holds.

Torch threads that outnumber the cores slow everything down (on 2 cores, a second busy process makes torch
10x slower), so each core is a lock file in the system's temporary folder and a worker holds one per torch
thread while it trains a cell. A second ``bench run`` started beside a first one waits for cores instead of
competing for them; the kernel drops the locks of a process that dies.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import environment, paths

POLL_SECONDS = 1.0


def _folder() -> Path:
    return Path(tempfile.gettempdir()) / "transferbench-cores"


def _take(stack: contextlib.ExitStack, want: int) -> int:
    """Lock up to ``want`` free cores for as long as ``stack`` is open; return how many were free."""
    held = 0
    for i in range(environment.available_cores()):
        if held < want and stack.enter_context(paths.file_lock(_folder() / f"core{i}.lock", blocking=False)):
            held += 1
    return held


@contextlib.contextmanager
def hold(threads: int, waiting: Callable[[str], None] = lambda msg: None) -> Iterator[int]:
    """Hold ``threads`` cores of this machine (at most all of them), waiting while others hold them; torch then
    uses that many threads. Yields the number held."""
    want = max(1, min(threads, environment.available_cores()))
    while True:
        with contextlib.ExitStack() as stack:
            if _take(stack, want) == want:
                environment.set_threads(want)
                yield want
                return
        waiting(f"waiting for {want} free core(s): other transferbench processes hold them")
        time.sleep(POLL_SECONDS)


def free() -> int:
    """How many cores of this machine no process holds right now."""
    with contextlib.ExitStack() as stack:
        return _take(stack, environment.available_cores())


def all_taken() -> bool:
    """Whether other processes hold every core of this machine right now."""
    with contextlib.ExitStack() as stack:
        return _take(stack, 1) == 0


def wait_for_free(poll: float = POLL_SECONDS) -> None:
    """Return once a core has been free at two looks ``poll`` seconds apart: a worker between two cells lets its
    cores go for an instant only, and that is no free core."""
    before = False
    while True:
        now = not all_taken()
        if now and before:
            return
        before = now
        time.sleep(poll)
