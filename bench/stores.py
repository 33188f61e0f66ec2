"""The MLflow and Optuna stores: created once, before any work, in a way no kill can leave half-made.

A local sqlite store is built under a temporary name and renamed into place, while an exclusive lock keeps every
other process out: a reader finds no store or a whole one, and two runs started together never migrate a schema
at once. A store found unusable is rebuilt when it holds nothing (moved aside, never deleted) and otherwise
reported with the command that upgrades it. Servers (an MLflow tracking server, PostgreSQL) are opened as they are.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy

from bench import faults, paths

if TYPE_CHECKING:
    from bench.config import Experiment

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
STORAGE_ENV = "TRANSFERBENCH_OPTUNA_STORAGE"

# Claims on cells (bench/execution/claims.py), in the Optuna storage that every worker of a matrix shares: part of
# that store's schema, so created with it, once.
CLAIMS = sqlalchemy.Table(
    "transferbench_claims",
    sqlalchemy.MetaData(),
    sqlalchemy.Column("key", sqlalchemy.String(64), primary_key=True),
    sqlalchemy.Column("owner", sqlalchemy.String(256), nullable=False),
    sqlalchemy.Column("expires", sqlalchemy.Float, nullable=False),
)


@dataclass(frozen=True)
class Stores:
    """Where a run's results go, decided once when a command starts and handed to every process of the run (a
    worker or a Ray node never resolves them again from its own environment)."""

    tracking: str  # the MLflow tracking URI
    optuna: str  # the Optuna storage URL

    @property
    def claims(self) -> str:
        """Where the claims on cells live: the ``CLAIMS`` table of the Optuna storage, which every worker shares."""
        return self.optuna


def resolve(exp: Experiment) -> Stores:
    """The experiment's stores: each one as the file (or a flag) sets it, else from the environment, else sqlite in
    the results folder."""
    return Stores(tracking_uri(exp.tracking_uri), storage_url(exp.optuna_storage))


def tracking_uri(configured: str | None) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the results folder."""
    return configured or os.environ.get(TRACKING_ENV) or f"{SQLITE}{(paths.results_root() / 'mlflow.db').resolve()}"


def storage_url(configured: str | None) -> str:
    """``configured``, else ``$TRANSFERBENCH_OPTUNA_STORAGE``, else ``optuna.db`` in the results folder."""
    return configured or os.environ.get(STORAGE_ENV) or f"{SQLITE}{(paths.results_root() / 'optuna.db').resolve()}"


class StoreError(RuntimeError):
    """A store that exists, holds results and cannot be opened: the message says how to fix it."""


def connect_args(url: str) -> dict[str, int]:
    """Connection arguments for a store's engine: a sqlite file busy with another worker's write is waited for."""
    return {"timeout": 60} if url.startswith("sqlite") else {}


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI, else None."""
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def prepare(tracking_uri: str, optuna_url: str) -> list[str]:
    """Create or check both stores; return what was repaired (one line each), for the caller to show."""
    repaired = [_prepare(tracking_uri, _build_mlflow, "runs", "mlflow db upgrade")]
    repaired.append(_prepare(optuna_url, _build_optuna, "trials", "optuna storage upgrade --storage"))
    return [line for line in repaired if line]


def _prepare(uri: str, build: Callable[[str], None], table: str, upgrade: str) -> str | None:
    path = sqlite_path(uri)
    if path is None:
        _reach(uri)
        build(uri)  # a server or a server database: it has its own locking, and creating its tables is idempotent
        return None
    with paths.file_lock(path.with_name(f".{path.name}.lock")):
        for stale in path.parent.glob(f".{path.name}.*.tmp*"):  # a build killed earlier (we hold the lock)
            stale.unlink(missing_ok=True)
        repaired = None
        if path.exists():
            try:
                build(uri)  # opening checks the schema
                return None
            except Exception as err:  # noqa: BLE001 - any failure to open is reported or repaired below
                if _rows(path, table):
                    raise StoreError(
                        f"{path} holds results but cannot be opened ({_first_line(err)}). Back it up, then run "
                        f"`{upgrade} {uri}`, or move it aside to start a new store"
                    ) from err
                aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
                path.rename(aside)
                repaired = f"{path} was half-created by a process that was killed: moved aside to {aside}, rebuilt"
        with paths.atomic_file(path) as tmp:
            _new_sqlite(build, tmp)
            faults.point("stores.create")
            with sqlite3.connect(tmp) as db:  # readers (the MLflow UI) never block writers, nor writers readers
                db.execute("PRAGMA journal_mode=WAL")
        return repaired


def _new_sqlite(build: Callable[[str], None], file: Path) -> None:
    """A new store in ``file``: a copy of an empty one that these versions of the libraries built before, opened by
    ``build`` (which checks it and points it at this results folder). Building a schema runs every migration
    (MLflow's: about a second a store); copying an empty one takes milliseconds. The empty stores are kept in the
    cache, keyed by the builder and the versions of MLflow, Optuna and SQLAlchemy."""
    versions = "-".join(importlib.metadata.version(p) for p in ("mlflow", "optuna", "sqlalchemy"))
    empty = paths.cache_dir("stores") / f"{build.__name__.strip('_')}-{versions}.db"
    if not empty.is_file():
        with paths.atomic_file(empty) as tmp:
            build(f"{SQLITE}{tmp}")
    shutil.copyfile(empty, file)
    build(f"{SQLITE}{file}")


def _reach(uri: str) -> None:
    """A server store answers, or a StoreError says which one does not and why (before any work is done)."""
    shown = _without_password(uri)
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).close()
        except urllib.error.HTTPError:
            return  # it answered (a proxy or an authenticating server may refuse /health)
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise StoreError(
                f"cannot reach the MLflow tracking server at {shown} ({reason}): start it (docs/cluster.md shows "
                "how) or correct tracking_uri / --tracking-uri"
            ) from None
        return
    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10} if "postgres" in uri else {})
        with engine.connect():
            pass
        engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as err:
        cause = _first_line(getattr(err, "orig", None) or err)
        raise StoreError(
            f"cannot connect to the database {shown} ({cause}): start it (docs/cluster.md shows how) or correct "
            "the URL (tracking_uri / optuna_storage, --tracking-uri / --optuna-storage)"
        ) from None
    except ModuleNotFoundError as err:
        raise StoreError(f"{shown}: its database driver is not installed ({err.name}); pip install it") from None


def _without_password(uri: str) -> str:
    """``uri`` with a password in it replaced by ``***``."""
    if uri.startswith(("http://", "https://")):
        return uri
    try:
        return sqlalchemy.engine.make_url(uri).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return uri


def _rows(path: Path, table: str) -> int:
    """Rows in ``table`` of a sqlite file, 0 when the table (or a readable file) is missing."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _build_mlflow(uri: str) -> None:
    """Open (creating or checking the schema of) an MLflow store; servers are checked by their first request."""
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    artifacts = (paths.results_root() / "artifacts").resolve().as_uri()
    try:
        SqlAlchemyStore(uri, artifacts)
        if uri.startswith(SQLITE):  # a copy of an empty store: its Default experiment keeps artifacts here too
            with sqlite3.connect(sqlite_path(uri)) as db:
                db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (f"{artifacts}/0",))
    finally:
        engine = SqlAlchemyStore._engine_map.pop(uri, None)  # MLflow caches one engine per URI: close this one
        if engine is not None:
            engine.dispose()


def _build_optuna(url: str) -> None:
    """Open (creating or checking the schema of) an Optuna storage, with the cell claims table beside it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.storages.RDBStorage(url).engine.dispose()
    engine = sqlalchemy.create_engine(url)
    CLAIMS.create(engine, checkfirst=True)
    engine.dispose()
