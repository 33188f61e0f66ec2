"""Why writing failed, in one line: a full disk, a read-only folder or database, a path that is not a folder.

Libraries report these very differently (``OSError`` from Python, ``database or disk is full`` from sqlite
wrapped by SQLAlchemy and MLflow, ``iostream error`` from ``torch.save``, Optuna's ``Should not reach`` after its
own write failed); ``explain`` looks through an exception and its causes for the one a user can act on.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from bench import paths

RESUME = "finished cells are kept; `bench run` resumes once this is fixed"
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
SQLITE_FULL = "database or disk is full"
SQLITE_DENIED = ("attempt to write a readonly database", "unable to open database file")
SQLITE_LOCKED = "database is locked"


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _full_folder() -> Path | None:
    """The first folder a run writes to (results, caches) whose file system has less than 1 MiB free."""
    for folder in (paths.results_root(), paths.cache_root()):
        probe = next((p for p in [folder, *folder.parents] if p.exists()), None)
        if probe is not None and shutil.disk_usage(probe).free < 1 << 20:
            return folder
    return None


def explain(err: BaseException) -> str | None:
    """One line naming the path and the cause when ``err`` comes from storage, else None (a bug: show it)."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in FULL + DENIED + (errno.ENOTDIR, errno.ENAMETOOLONG):
            where = e.filename or _full_folder() or paths.results_root()
            return f"cannot write {where}: {os.strerror(e.errno).lower()}; {RESUME}"
        text = str(e)
        if SQLITE_FULL in text:
            return f"cannot write the stores under {paths.results_root()}: no space left on device; {RESUME}"
        if any(s in text for s in SQLITE_DENIED):
            return f"cannot write the stores under {paths.results_root()}: {text.splitlines()[0][:200]}; {RESUME}"
        if SQLITE_LOCKED in text:
            return (
                f"the stores under {paths.results_root()} stayed locked by another process for a minute (a stuck "
                f"`bench run` or a tool holding them open?); {RESUME}"
            )
    folder = _full_folder()
    if folder is not None:  # e.g. torch.save's "iostream error", which names no cause
        return f"cannot write {folder}: no space left on device; {RESUME}"
    return None
