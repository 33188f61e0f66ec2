"""Shared fixtures: the real data root, a fresh results folder per test, the tiny experiment, and runs made once
per session and shared by pytest-xdist's workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"
if "TRANSFERBENCH_DATA" not in os.environ and MIRROR.is_dir():
    os.environ["TRANSFERBENCH_DATA"] = str(MIRROR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest_plugins = ["xdist_groups"]  # the cluster tests on one pytest-xdist worker, first (tests/xdist_groups.py)


@pytest.fixture(scope="session", autouse=True)
def one_share_of_the_cores() -> Iterator[None]:
    """Under pytest-xdist (``-n N``), each worker process trains on its share of the cores (torch threads that
    outnumber the cores make everything ten times slower), and the ``bench`` processes its tests start lock cores
    in a temporary folder of their own: the core locks are machine-wide (bench/core_locks.py), and each worker's runs
    use one thread. The folder is short (Ray's sockets live under it) and others may enter it (PostgreSQL's)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers == 1:
        yield
        return
    import torch

    from bench import environment

    torch.set_num_threads(max(1, environment.available_cores() // workers))
    temp = tempfile.mkdtemp(prefix=f"tb-{os.environ['PYTEST_XDIST_WORKER']}-")
    os.chmod(temp, 0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", temp)
        mp.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
        yield
    shutil.rmtree(temp, ignore_errors=True)


def session_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this test session, the same for every pytest-xdist worker."""
    root = tmp_path_factory.getbasetemp()
    return (root.parent if "PYTEST_XDIST_WORKER" in os.environ else root) / name


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The session folder ``name`` filled by ``make(folder)`` once per test session: the first pytest-xdist worker
    to ask makes it, holding a lock, and the others wait for it and share it."""
    from bench import paths

    folder = session_folder(tmp_path_factory, name)
    with paths.file_lock(folder.with_name(f"{name}.lock")):
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed half-way left
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".made").touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Decoded datasets and converted weights, keyed by content and written atomically: safe to share between
    tests and between pytest-xdist's workers.

    Set for the whole session, so that module-scoped fixtures (which run before each test's own folders are set)
    never write into the checkout's results/ either.
    """
    cache = session_folder(tmp_path_factory, "cache")
    cache.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERBENCH_RESULTS", str(tmp_path_factory.mktemp("session-results")))
        mp.setenv("TRANSFERBENCH_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def results_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> Iterator[Path]:
    """Every test writes its results and stores under its own temporary folder, and leaves MLflow's tracking URI
    as it found it (``mlflow.set_tracking_uri`` is process-wide, and sets $MLFLOW_TRACKING_URI for subprocesses)."""
    root = tmp_path / "results"
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(root))
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(shared_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TRANSFERBENCH_WORKERS", "1")  # cells train in the test's process, unless a test asks
    yield root
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


def tiny_experiment(**overrides) -> dict:
    """The smallest real image experiment: 2 epochs, 2 trials, 2 seeds on a few CIFAR-10 images, with the tiny
    random image backbone (timm's test_efficientnet at 32 px): every mechanism of the harness, little arithmetic."""
    exp = {
        "name": "tiny",
        "backbones": [{"name": "tiny_image"}],
        "datasets": ["cifar10"],
        "strategies": ["feature_extraction", "finetune", "scratch"],
        "budgets": [7],  # labelled per class: 3 validate (val_fraction 0.45), 4 train
        "seeds": 2,
        "tuning": {"n_trials": 2},
        "training": {"epochs": 2, "batch_size": 16},
        "splits": {"val_fraction": 0.45, "test_per_class": 5},
    }
    exp.update(overrides)
    return exp


@pytest.fixture(scope="session")
def exp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny experiment as a file, for tests that run the command line."""
    return (
        made_once(
            tmp_path_factory, "exp", lambda folder: (folder / "tiny.yaml").write_text(yaml.safe_dump(tiny_experiment()))
        )
        / "tiny.yaml"
    )


@pytest.fixture(scope="session")
def reference_results(exp_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder written by one process running the tiny experiment, nobody interrupting it (once per
    session, shared by pytest-xdist's workers)."""

    def run(results: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "bench", "--results", str(results), "run", str(exp_file)],
            capture_output=True,
            text=True,
            env={**os.environ, "TRANSFERBENCH_WORKERS": "1"},
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    return made_once(tmp_path_factory, "reference", run)


@pytest.fixture(scope="session")
def reference(reference_results: Path) -> pd.DataFrame:
    """The tiny experiment's summary from one process nobody interrupted: what every other way of running it
    (resumed, several workers, on Ray) must give."""
    return pd.read_csv(reference_results / "tiny" / "summary.csv")
