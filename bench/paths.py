"""Where things live on disk: the data root, the results folder and the caches under it.

Both roots are settings: ``--data-root`` / ``$TRANSFERBENCH_DATA`` (default ``./data``) and
``--results`` / ``$TRANSFERBENCH_RESULTS`` (default ``./results``). Caches live under
``$TRANSFERBENCH_CACHE`` (default ``<results>/cache``); their keys are content digests, so they can be shared.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATA_ENV = "TRANSFERBENCH_DATA"
RESULTS_ENV = "TRANSFERBENCH_RESULTS"
CACHE_ENV = "TRANSFERBENCH_CACHE"


def data_root() -> Path:
    """The folder holding one sub-folder per dataset, in its upstream layout."""
    return Path(os.environ.get(DATA_ENV, "data"))


def results_root() -> Path:
    """Everything a run writes: MLflow and Optuna stores, per-experiment results, caches."""
    return Path(os.environ.get(RESULTS_ENV, "results"))


def cache_root() -> Path:
    """The folder holding every cache (not created here)."""
    return Path(os.environ.get(CACHE_ENV, results_root() / "cache"))


def cache_dir(kind: str) -> Path:
    """A cache folder (``weights``, ``datasets``, ``features``), keyed by content digests."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def experiment_dir(experiment: str) -> Path:
    path = results_root() / experiment
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path of its own beside ``path``, renamed onto ``path`` when the block succeeds, removed when not.

    Readers see the old file or the whole new one, never a partial one, and concurrent writers never share a
    temporary name (the last complete file wins). ``suffix`` keeps an extension writers insist on (``.npz``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive OS lock on ``path`` for the block; yields whether it was taken (always, when ``blocking``).

    The kernel releases it when the process dies, however it dies, so a lock can never be left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
