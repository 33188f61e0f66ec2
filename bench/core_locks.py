"""Cores of this machine, shared by every transferbench process on it: a worker trains only on cores it holds.

Torch threads that outnumber the cores slow everything down (on 2 cores, a second busy process makes torch
10x slower), so each core is a lock file in the system's temporary folder, and a worker holds one per torch
thread from its first cell to its last. A ``bench run`` holds every free core from its first instant
(``reserve``), before its start-up, and hands them to its workers as they start: a second ``bench run`` started
beside it finds them taken and waits instead of competing. The kernel drops the locks of a process that dies.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import environment, paths

POLL_SECONDS = 1.0  # how often a run waiting for a free core looks
HOLD_POLL_SECONDS = 0.1  # how often a worker waiting for cores tries: a core handed over to it is free meanwhile
SETTLE_SECONDS = 0.5  # a core free at two looks this far apart is free, not being handed over

_reserved: list[contextlib.ExitStack] = []  # cores this process holds for workers that have not taken them yet


def _folder() -> Path:
    return Path(tempfile.gettempdir()) / "transferbench-cores"


@contextlib.contextmanager
def _alone() -> Iterator[None]:
    """No other process takes or counts cores meanwhile: taking several is atomic, and a hand-over from this
    process's reservation to its worker is never seen half done."""
    with paths.file_lock(_folder() / "take.lock"):
        yield


def _lock(i: int) -> contextlib.AbstractContextManager[bool]:
    """Core ``i``'s lock, taken if it is free: yields whether it was."""
    return paths.file_lock(_folder() / f"core{i}.lock", blocking=False)


def _take(stack: contextlib.ExitStack, want: int) -> int:
    """Lock up to ``want`` free cores for as long as ``stack`` is open; return how many were free."""
    held = 0
    for i in range(environment.available_cores()):
        if held < want and stack.enter_context(_lock(i)):
            held += 1
    return held


def _free_now() -> set[int]:
    """The cores no process holds right now."""
    found = set()
    for i in range(environment.available_cores()):
        with _lock(i) as free:
            if free:
                found.add(i)
    return found


def reserve(settle: float = SETTLE_SECONDS) -> int:
    """Hold every free core of this machine for this process's workers, until they take them over (``hold``) or
    the process lets them go (``keep``); return how many. While other processes hold cores, a core counts as free
    when it is free at two looks ``settle`` seconds apart, not while one of them hands it to its worker."""
    with _alone():
        free = _free_now()
    if free and len(free) + len(_reserved) < environment.available_cores():
        time.sleep(settle)
    with _alone():
        for i in sorted(free):
            stack = contextlib.ExitStack()
            if stack.enter_context(_lock(i)):
                _reserved.append(stack)
            else:
                stack.close()
    return len(_reserved)


def keep(n: int) -> None:
    """Let all but ``n`` of this process's reserved cores go: its workers need no more."""
    if len(_reserved) > n:
        with _alone():
            _let_go(len(_reserved) - n)


def hand_over(n: int) -> None:
    """Let ``n`` of this process's reserved cores go, for a worker it started to take at once."""
    with _alone():
        _let_go(n)


def _let_go(n: int) -> None:
    for _ in range(min(n, len(_reserved))):
        _reserved.pop().close()


@contextlib.contextmanager
def hold(
    threads: int, waiting: Callable[[str], None] = lambda msg: None, poll: float = HOLD_POLL_SECONDS
) -> Iterator[int]:
    """Hold ``threads`` cores of this machine (at most all of them), first from this process's reservation,
    waiting while others hold them; torch then uses that many threads. Yields the number held."""
    want = max(1, min(threads, environment.available_cores()))
    while True:
        with contextlib.ExitStack() as stack:
            with _alone():
                _let_go(want)  # the reservation's cores become the worker's, with no gap between
                taken = _take(stack, want)
            if taken == want:
                environment.set_threads(want)
                yield want
                return
        waiting(f"waiting for {want} free core(s): other transferbench processes hold them")
        time.sleep(poll)


def free() -> int:
    """How many cores of this machine no process holds right now."""
    with _alone():
        return len(_free_now())


def all_taken() -> bool:
    """Whether other processes hold every core of this machine right now."""
    with _alone(), contextlib.ExitStack() as stack:
        return _take(stack, 1) == 0


def wait_for_free(poll: float = POLL_SECONDS) -> None:
    """Return once a core has been free at two looks ``poll`` seconds apart: a run hands its reserved cores to
    its workers as they start, and a core free for that instant is no free core."""
    before = False
    while True:
        now = not all_taken()
        if now and before:
            return
        before = now
        time.sleep(poll)
