"""A strategy from another installed package is found by name, listed, and run like a built-in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import tiny_experiment

PLUGIN = Path(__file__).parent / "example_plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin installed with pip into its own site folder (put on PYTHONPATH below)."""
    site, source = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("plugin") / "src"
    shutil.copytree(PLUGIN, source)  # building writes into the source folder: keep the checkout clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, source],
        check=True,
    )
    return site


def _bench(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True)


def test_plugin_strategy_is_listed(plugin_site):
    out = _bench(["list", "strategies"], plugin_site)
    assert out.returncode == 0, out.stderr
    assert "surgical" in out.stdout and "Lee et al. 2023" in out.stdout


def test_without_the_plugin_the_name_is_unknown(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(strategies=["surgical"])))
    out = subprocess.run([sys.executable, "-m", "bench", "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown strategy 'surgical'" in out.stderr


def test_plugin_strategy_runs_in_a_matrix_and_produces_mlflow_runs(plugin_site, tmp_path, results_root):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(strategies=["surgical", "scratch"])))
    out = _bench(["run", str(path)], plugin_site)
    assert out.returncode == 0, out.stderr[-2000:]
    mlflow.set_tracking_uri(f"sqlite:///{results_root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["tiny"], filter_string="tags.strategy = 'surgical'")
    assert sorted(runs["tags.stage"]) == ["cell", "final", "final", "trial", "trial"]
    assert runs.loc[runs["tags.stage"] == "final", "metrics.test_acc"].notna().all()
