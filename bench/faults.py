"""Named fault points: places in the code where a test stops a run on purpose, instead of racing a timer.

As etcd's gofail or TiKV's fail-rs: the code calls ``point("cell.final_seed")`` where something can go wrong, and a
test arms points by name for the processes it starts, through the environment::

    TRANSFERBENCH_FAULTS="cell.final_seed@2:kill"     the 2nd time a process reaches it: SIGKILL itself
    TRANSFERBENCH_FAULTS="cell.trial:interrupt:worker,run.cores_held:pause"
                                                     several points; one only in spawned workers (``--workers``)
    TRANSFERBENCH_FAULT_DIR=/tmp/faults              each point fires at most once across all processes, and
                                                     leaves a file named after it holding the PID that fired

Actions: ``kill`` (SIGKILL, as ``kill -9``), ``interrupt`` (SIGINT, as Ctrl-C), ``pause`` (wait until a file
``<POINT>.release`` appears beside the point's file: the test writes it to let the process go on, or kills it).
Scopes: ``worker`` fires only in a process that ``--workers`` spawned, ``main`` only in one it did not.
Unarmed, a point costs one dictionary lookup.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

FAULTS_ENV = "TRANSFERBENCH_FAULTS"
FAULT_DIR_ENV = "TRANSFERBENCH_FAULT_DIR"
POINTS = {
    "stores.create": "a new sqlite store is written, not yet in place",
    "run.cores_held": "`bench run` holds its cores, before its start-up (or after waiting for one)",
    "cell.trial": "a trial's MLflow run is open, before it trains",
    "cell.final_seed": "a final seed's MLflow run is open, before it trains",
}
ACTIONS = ("kill", "interrupt", "pause")
SCOPES = ("", "worker", "main")


@dataclass
class Fault:
    nth: int
    action: str
    scope: str
    reached: int = 0


@functools.cache
def armed() -> dict[str, Fault]:
    """The points armed in this process's environment; a ValueError naming the grammar for a bad one."""
    faults = {}
    for spec in filter(None, os.environ.get(FAULTS_ENV, "").split(",")):
        where, _, rest = spec.strip().partition(":")
        action, _, scope = rest.partition(":")
        name, _, nth = where.partition("@")
        if name not in POINTS or action not in ACTIONS or scope not in SCOPES or not (nth or "1").isdigit():
            raise ValueError(
                f"{FAULTS_ENV}: {spec!r} is not POINT[@N]:ACTION[:worker|:main] with POINT one of "
                f"{', '.join(POINTS)} and ACTION one of {', '.join(ACTIONS)}"
            )
        faults[name] = Fault(int(nth or 1), action, scope)
    return faults


def point(name: str) -> None:
    """A place where a test may stop this process (see the module's docstring); does nothing unless armed."""
    fault = armed().get(name)
    if fault is None or not _in_scope(fault.scope):
        return
    fault.reached += 1
    if fault.reached != fault.nth or not _first_to_fire(name):
        return
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.action == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises at the next bytecode, which ends this sleep: never go on meanwhile
    else:
        file = fired_file(name)
        while file is not None and not file.with_name(f"{name}.release").exists():
            time.sleep(0.01)


def fired_file(name: str) -> Path | None:
    """Where a point that fired leaves its PID (``None`` without a fault folder)."""
    folder = os.environ.get(FAULT_DIR_ENV)
    return Path(folder) / name if folder else None


def _in_scope(scope: str) -> bool:
    spawned = multiprocessing.parent_process() is not None
    return not scope or (scope == "worker") == spawned


def _first_to_fire(name: str) -> bool:
    """Whether this process fires the point: always without a fault folder; with one, only the first to reach it."""
    file = fired_file(name)
    if file is None:
        return True
    mine = file.with_name(f".{name}.{os.getpid()}")
    mine.write_text(str(os.getpid()))
    try:
        os.link(mine, file)  # atomic: a reader sees no file or the whole PID, and one process wins
    except FileExistsError:
        return False
    finally:
        mine.unlink()
    return True
