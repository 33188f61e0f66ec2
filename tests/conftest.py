"""Shared fixtures: the real data root, a fresh results folder per test, a tiny experiment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"
if "TRANSFERBENCH_DATA" not in os.environ and MIRROR.is_dir():
    os.environ["TRANSFERBENCH_DATA"] = str(MIRROR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Decoded datasets and converted weights, keyed by content: safe to share between tests.

    Set for the whole session, so that module-scoped fixtures (which run before each test's own folders are set)
    never write into the checkout's results/ either.
    """
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERBENCH_RESULTS", str(tmp_path_factory.mktemp("session-results")))
        mp.setenv("TRANSFERBENCH_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def results_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> Path:
    """Every test writes its results and stores under its own temporary folder."""
    root = tmp_path / "results"
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(root))
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(shared_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TRANSFERBENCH_WORKERS", "1")  # cells train in the test's process, unless a test asks
    return root


def tiny_experiment(**overrides) -> dict:
    """The smallest real image experiment: 2 epochs, 2 trials, 2 seeds on a few CIFAR-10 images."""
    exp = {
        "name": "tiny",
        "backbones": [{"name": "mobilenetv2_100", "input_size": 64}],
        "datasets": ["cifar10"],
        "strategies": ["feature_extraction", "finetune", "scratch"],
        "budgets": [4],
        "seeds": 2,
        "tuning": {"n_trials": 2},
        "training": {"epochs": 2, "batch_size": 16},
        "splits": {"val_per_class": 3, "test_per_class": 5},
    }
    exp.update(overrides)
    return exp


@pytest.fixture(scope="session")
def exp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny experiment as a file, for tests that run the command line."""
    path = tmp_path_factory.mktemp("exp") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment()))
    return path


@pytest.fixture(scope="session")
def reference_results(exp_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder written by one process running the tiny experiment, nobody interrupting it."""
    results = tmp_path_factory.mktemp("reference")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--results", str(results), "run", str(exp_file)],
        capture_output=True,
        text=True,
        # without MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() in an earlier test sets it, and this session
        # fixture runs before conftest's per-test clean-up, so the run would write to that test's store
        env={**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "TRANSFERBENCH_WORKERS": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return results


@pytest.fixture(scope="session")
def reference(reference_results: Path) -> pd.DataFrame:
    """The tiny experiment's summary from one process nobody interrupted: what every other way of running it
    (resumed, several workers, on Ray) must give."""
    return pd.read_csv(reference_results / "tiny" / "summary.csv")
