"""Why a run failed, in one line, when the user can act on it: writing failed (a full disk, a read-only folder or
database, a path that is not a folder), or the environment is broken (a package missing, a native library that
does not load).

Libraries report these very differently (``OSError`` from Python, ``database or disk is full`` from sqlite
wrapped by SQLAlchemy and MLflow, ``iostream error`` from ``torch.save``, Optuna's ``Should not reach`` after its
own write failed, ``cannot load library`` from cffi); ``explain`` and ``environment`` look through an exception
and its causes for the one a user can act on.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from bench import paths

RESUME = "finished cells are kept; `bench run` resumes once this is fixed"
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
SQLITE_FULL = "database or disk is full"
SQLITE_DENIED = ("attempt to write a readonly database", "unable to open database file")
SQLITE_LOCKED = "database is locked"
REBUILD = "rebuild the environment: `rm -rf .venv && make install` (it installs requirements.lock, then checks it)"
# How a native library that does not load shows up: the dynamic loader (ImportError, OSError), cffi, or torch's
# registry of C++ operators when an extension does not match the torch it was built for.
NATIVE = re.compile(
    r"cannot open shared object file|cannot load library|undefined symbol|library not found|"
    r"operator \S+ does not exist"
)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def first_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message``'s first line, cut at ``limit`` characters."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:limit] if text else ''}".rstrip(": ")


def _package(err: BaseException, module: str | None = None) -> str:
    """The installed distribution ``err`` comes from, as ``pillow (PIL)``: its module, else the native file that
    failed to load, else the package where the traceback last entered site-packages from outside it."""
    module = module or _package_folder(getattr(err, "path", None)) or _entered(err)
    if module is None:
        return "a package"
    top = module.split(".")[0]
    names = metadata.packages_distributions().get(top, [])
    return f"{names[0]} ({top})" if names and names[0].lower() != top.lower() else top


def _entered(err: BaseException) -> str | None:
    """The package where ``err``'s traceback last went from code outside site-packages into it."""
    entered, outside, tb = None, True, err.__traceback__
    while tb is not None:
        inside = _site_module(tb.tb_frame.f_code.co_filename)
        if inside is not None and outside:
            entered = inside
        outside, tb = inside is None, tb.tb_next
    return entered


def _package_folder(file: str | None) -> str | None:
    """The name of the outermost package folder holding ``file`` (a native library that failed to load), else None."""
    top, folder = None, Path(file).parent if file else None
    while folder is not None and (folder / "__init__.py").is_file():
        top, folder = folder.name, folder.parent
    return top


def _site_module(file: str | None) -> str | None:
    """The top-level module a file in site-packages belongs to, else None."""
    parts = Path(file).parts if file else ()
    if "site-packages" not in parts[:-1]:
        return None
    return parts[parts.index("site-packages") + 1].removesuffix(".py")


def environment(err: BaseException) -> str | None:
    """One line naming the package and the fix when ``err`` comes from a broken environment, else None."""
    problem = broken_package(err)
    return None if problem is None else f"{problem}; {REBUILD}"


def broken_package(err: BaseException) -> str | None:
    """What is broken when ``err`` comes from the environment (a package that is not installed, a native library
    that does not load), naming the package; else None."""
    for e in _chain(err):
        if isinstance(e, ModuleNotFoundError) and e.name and e.name.split(".")[0] != "bench":
            return f"{_package(e, e.name)} is not installed in {sys.prefix}"
        if isinstance(e, ImportError | OSError | RuntimeError) and NATIVE.search(str(e)):
            return f"{_package(e)} cannot load its native code ({first_line(e, 200)})"
    return None


def _full_folder() -> Path | None:
    """The first folder a run writes to (results, caches) whose file system has less than 1 MiB free."""
    for folder in (paths.results_root(), paths.cache_root()):
        probe = next((p for p in [folder, *folder.parents] if p.exists()), None)
        if probe is not None and shutil.disk_usage(probe).free < 1 << 20:
            return folder
    return None


def explain(err: BaseException) -> str | None:
    """One line naming the path and the cause when ``err`` comes from storage, or the package and the fix when it
    comes from a broken environment; else None (a bug: show it)."""
    if (broken := environment(err)) is not None:
        return broken
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
