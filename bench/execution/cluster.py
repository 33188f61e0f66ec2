"""``--ray [ADDRESS]``: the matrix's unfinished cells as Ray tasks, on a Ray cluster started here or joined.

A cell task runs the same worker loop as a local worker (``worker.work``, for one cell): it claims the cell in
the Optuna storage, tunes it, trains its final seeds, logs to the MLflow store and returns the cell's record.
This process, the driver, shows the progress, saves the records and then writes the summary and the report.

Ray retries a task whose worker process or node died. The retry takes the dead holder's claim over (at once on
the same host, after the claim's lease elsewhere), ends the runs it left open and keeps its saved seeds, so
nothing is trained or counted twice. Each task asks Ray for ``training.threads`` CPUs (its torch threads) and,
on a cluster with GPUs, for ``cluster.gpus_frozen`` or ``cluster.gpus_trained`` of one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import environment, faults, paths, results
from bench.config import ConfigError, Experiment
from bench.execution.progress import Display
from bench.execution.worker import Event, work
from bench.matrix import Cell
from bench.stores import Stores
from bench.strategies import STRATEGIES

LOCAL = "local"
MAX_RETRIES = 3  # a cell whose worker process or node dies this many times stops the run
STOP_SECONDS = 30.0
CLIENT_ATTEMPTS = 3  # tries to connect as a Ray Client
# What a task needs from the driver's environment: where data, results and caches are, no network, and the fault
# points a test armed (bench/faults.py).
PASSED_ENV = (
    *(paths.DATA_ENV, paths.RESULTS_ENV, paths.CACHE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
    *(faults.FAULTS_ENV, faults.FAULT_DIR_ENV),
)
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def stores_are_local(uri: str) -> bool:
    """Whether a store URI names a file on this machine (sqlite, ``file:`` or a bare path)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_stores(tracking: str, optuna: str, remote_nodes: list[str]) -> None:
    """A cluster with nodes on other machines needs stores they can reach: else a ConfigError saying what to set."""
    local = [f"the MLflow store {tracking}"] if stores_are_local(tracking) else []
    local += [f"the Optuna storage {optuna}"] if stores_are_local(optuna) else []
    if remote_nodes and local:
        raise ConfigError(
            f"the Ray cluster has nodes on other machines ({', '.join(remote_nodes[:3])}), which cannot see "
            f"{' or '.join(local)} on this one: set tracking_uri (or --tracking-uri) to an MLflow tracking server "
            "such as http://HOST:5000 and optuna_storage (or --optuna-storage) to a database such as "
            "postgresql://USER@HOST/optuna; docs/cluster.md shows how to start both"
        )


def resources(exp: Experiment, cell: Cell, cluster_gpus: float) -> dict[str, float]:
    """What one cell asks Ray for: its torch threads as CPUs and, where the cluster has GPUs and the experiment
    may use them, a share of a GPU by whether its backbone trains."""
    gpus = 0.0
    if cluster_gpus > 0 and exp.training.device in ("auto", "cuda"):
        frozen = STRATEGIES.get(cell.strategy).frozen_backbone
        gpus = exp.cluster.gpus_frozen if frozen else exp.cluster.gpus_trained
    return {"num_cpus": exp.training.threads, "num_gpus": gpus}


@contextlib.contextmanager
def connect(address: str) -> Iterator[dict[str, float]]:
    """Ray, started on this machine (``local``) or joined at ``address``, for the block; yields its resources.

    Tasks get the driver's data, results and cache folders and offline settings; a cluster started here is
    stopped at the end of the block, one that was joined keeps running."""
    import ray

    os.environ.update(QUIET_ENV)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ} | QUIET_ENV
    env[paths.RESULTS_ENV] = str(paths.results_root().resolve())
    options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.ERROR, "log_to_driver": False}
    if address == LOCAL:  # a new cluster even where another one runs (ray.init() alone would join that one)
        options |= {"address": "local", "num_cpus": environment.available_cores(), "include_dashboard": False}
    else:
        _answers(address)  # Ray itself retries an address where nothing listens for many minutes
        options["address"] = address
    warnings.filterwarnings("ignore", message="Ray Client connection timed out")  # said once, by the error below
    for attempt in range(CLIENT_ATTEMPTS):
        try:
            ray.init(**options)
            break
        except ConnectionAbortedError:  # a Ray Client server that answered, then failed to start this client's
            if attempt + 1 < CLIENT_ATTEMPTS:  # own server process (slow under load): a new client gets a new one
                continue
            raise ConfigError(_refused(address, traceback.format_exc())) from None
        except ConnectionError:
            raise ConfigError(_refused(address, traceback.format_exc())) from None
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def _refused(address: str, trace: str) -> str:
    """What to do when nothing usable answers at a Ray address; ``trace`` ends with the cause Ray gave."""
    cause = [line.strip() for line in trace.splitlines() if line.strip()][-1]
    return (
        f"--ray {address}: no Ray cluster answers there ({cause[:200]}); start one with `ray start --head` "
        "(docs/cluster.md), check the address and that RAY_AUTH_TOKEN is the cluster's, or use --ray local"
    )


def _answers(address: str) -> None:
    """Something listens at a Ray address (for ``auto``: the cluster this machine's Ray last started), within
    seconds; else a ConfigError saying what to do."""
    target = address
    if address == "auto":
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # where `ray start` notes its address
        target = os.environ.get("RAY_ADDRESS") or (current.read_text().strip() if current.is_file() else "")
        if not target:
            raise ConfigError(
                "--ray auto: no Ray cluster was started on this machine; start one with `ray start --head` "
                "(docs/cluster.md), give its address, or use --ray alone to start one for this run"
            )
    target = target.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"--ray {address}: nothing answers at {target} ({getattr(err, 'strerror', None) or err}); start the "
            "cluster with `ray start --head` (docs/cluster.md), check the address, or use --ray alone to start "
            "one for this run"
        ) from None


def remote_nodes() -> list[str]:
    """Addresses of the cluster's live nodes that are not on this machine."""
    import ray

    nodes = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    return sorted(ip for ip in nodes if not _on_this_machine(ip, ray.util.get_node_ip_address()))


def _on_this_machine(ip: str, driver_ip: str) -> bool:
    """Whether ``ip`` is an address of this machine: one a socket here can bind to."""
    if ip == driver_ip:
        return True
    try:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def run_on_ray(
    exp: Experiment, stores: Stores, cells: list[Cell], display: Display, run_id: str, cluster: dict[str, float]
) -> None:
    """Train ``cells`` as Ray tasks, with the stores this process resolved (not as each node's environment would
    set them), and save their records here; an error in one stops the others (their runs end KILLED) and is raised
    as a ``WorkerError``, as Ctrl-C is, once the tasks have stopped."""
    import ray
    from ray.util.queue import Queue

    from bench.execution.pool import WorkerError

    if exp.training.device == "cuda" and not cluster.get("GPU"):
        raise ConfigError("training.device is 'cuda' but the Ray cluster has no GPU: use 'auto' or add GPU nodes")
    events = Queue()
    lines = _Lines(display)
    task = ray.remote(max_retries=MAX_RETRIES)(_cell_task)
    pending = {
        task.options(**resources(exp, cell, cluster.get("GPU", 0.0)), name=cell.run_name).remote(
            exp, stores, cell, i, run_id, events
        ): cell
        for i, cell in enumerate(cells)
    }
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            lines.show(_drain(events))
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as err:
                    raise WorkerError(_reason(cell, err)) from None
                if record is not None and not results.is_finished(exp.name, cell):
                    results.save_cell(exp.name, cell, record)  # a node's results folder may not be this one
        lines.show(_drain(events))
    finally:
        if pending:  # Ctrl-C or an error: ask the running tasks to stop as after Ctrl-C, and wait for them
            for ref in pending:
                ray.cancel(ref)
            _wait_for_release(stores.claims, list(pending.values()))
            lines.show(_drain(events))


def _wait_for_release(claims_url: str, cells: list[Cell]) -> None:
    """Wait (at most ``STOP_SECONDS``) until no live task holds a claim on ``cells`` in the store at ``claims_url``.
    A cancelled task's reference resolves at once, but its worker first ends its open runs as KILLED, then releases
    its claim."""
    import sqlalchemy

    from bench.execution.claims import for_store

    claims, end = for_store(claims_url), time.monotonic() + STOP_SECONDS
    while time.monotonic() < end:
        try:
            if not any(claims.holder(c.key) for c in cells):
                return
        except sqlalchemy.exc.OperationalError:  # a stopping task kept the store locked past the busy timeout
            return  # stop looking: its claim ends with its process (at once here, at the lease's expiry elsewhere)
        time.sleep(0.2)


def _cell_task(
    exp: Experiment, stores: Stores, cell: Cell, index: int, run_id: str, events: Any
) -> dict[str, Any] | None:
    """One cell, in a Ray worker process: the local worker loop with Ray's CPUs; the record, or None if it failed
    (its event says why)."""
    started = time.time()  # before the imports and data loading of a fresh worker process
    import ray

    context = ray.get_runtime_context()
    share = context.get_assigned_resources()
    environment.set_threads(max(1, int(share.get("CPU", exp.training.threads))))
    where = {
        "ray_node": context.get_node_id()[:12],
        "ray_resources": ", ".join(f"{k}={v:g}" for k, v in sorted(share.items())),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "ray_task_started": f"{started:.3f}",  # seconds since the epoch: queueing shows against the run's start
    }

    def emit(event: Event) -> None:
        events.put((event.kind, index, event.text))  # plain values: the queue's actor then imports nothing of ours

    work(exp, stores, [cell], index, emit, run_id, hold=_ray_holds, where=where)
    return results.load_cell(exp.name, cell)


@contextlib.contextmanager
def _ray_holds(threads: int, say: Any) -> Iterator[int]:
    yield threads


def _drain(events: Any) -> list[Event]:
    out = []
    while not events.empty():
        out.append(Event(*events.get_nowait()))
    return out


def _reason(cell: Cell, err: Exception) -> str:
    """One message for a task that did not return: the worker's own error, or why Ray gave up on it."""
    import ray

    from bench import errors

    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if isinstance(err.cause, BaseException) else err
        return f"{cell.run_name}: {errors.explain(cause) or f'{type(cause).__name__}: {cause}'}"
    return f"{cell.run_name}: Ray gave up after {MAX_RETRIES} retries ({str(err).splitlines()[0][:300]})"


class _Lines:
    """Gives each running task a progress line of the display, free again when its cell is done."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self.by_task: dict[int, int] = {}

    def show(self, events: list[Event]) -> None:
        for event in events:
            free = sorted(set(range(len(self.display.lines))) - set(self.by_task.values()))
            line = self.by_task.get(event.worker, free[0] if free else 0)
            if event.kind == "status":
                self.by_task[event.worker] = line
            else:
                self.by_task.pop(event.worker, None)
            self.display.handle(Event(event.kind, line, event.text))
