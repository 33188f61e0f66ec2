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
from conftest import made_once, tiny_experiment

PLUGIN = Path(__file__).parent / "example_plugin"
pytestmark = pytest.mark.slow  # `bench` processes with a pip-installed plugin


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin installed with pip into its own site folder (put on PYTHONPATH below)."""

    def install(site: Path) -> None:
        source = tmp_path_factory.mktemp("plugin") / "src"
        shutil.copytree(PLUGIN, source)  # building writes into the source folder: keep the checkout clean
        _pip_install(source, site)

    return made_once(tmp_path_factory, "plugin-site", install)


def _pip_install(source: Path, site: Path) -> Path:
    """``pip install`` a package's source folder into ``site``; returns ``site``."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, source],
        check=True,
    )
    return site


def _bench(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def plugin_matrix(plugin_site, tmp_path_factory) -> tuple[Path, Path]:
    """One matrix with both of the plugin's strategies and scratch, run once for the tests that read it: its
    experiment file and results folder."""

    def run(folder: Path) -> None:
        path = folder / "tiny.yaml"
        path.write_text(yaml.safe_dump(tiny_experiment(strategies=["surgical", "my_bss", "scratch"])))
        out = _bench(["--results", str(folder / "results"), "run", str(path)], plugin_site)
        assert out.returncode == 0, out.stderr[-2000:]

    folder = made_once(tmp_path_factory, "plugin-matrix", run)
    return folder / "tiny.yaml", folder / "results"


def _plugin_runs(results: Path, strategy: str):
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")  # conftest resets it after the test
    return mlflow.search_runs(experiment_names=["tiny"], filter_string=f"tags.strategy = '{strategy}'")


def test_plugin_strategy_is_listed(plugin_site):
    out = _bench(["list", "strategies"], plugin_site)
    assert out.returncode == 0, out.stderr
    assert "surgical" in out.stdout and "Lee et al. 2023" in out.stdout


def test_without_the_plugin_the_name_is_unknown(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(strategies=["surgical"])))
    out = subprocess.run([sys.executable, "-m", "bench", "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown strategy 'surgical'" in out.stderr


def test_plugin_strategy_runs_in_a_matrix_and_produces_mlflow_runs(plugin_matrix):
    runs = _plugin_runs(plugin_matrix[1], "surgical")
    assert sorted(runs["tags.stage"]) == ["cell", "final", "final", "trial", "trial"]
    assert runs.loc[runs["tags.stage"] == "final", "metrics.test_acc"].notna().all()


def test_changing_a_plugins_source_reruns_its_cells_and_no_others(plugin_site, plugin_matrix, tmp_path):
    path, results = plugin_matrix
    changed = tmp_path / "site"
    shutil.copytree(plugin_site, changed)
    module = changed / "transferbench_surgical" / "__init__.py"
    module.write_text(module.read_text().replace("Hyperparameter(1, 3,", "Hyperparameter(1, 2,"))
    before = _bench(["--results", str(results), "run", str(path), "--dry-run"], plugin_site).stdout
    after = _bench(["--results", str(results), "run", str(path), "--dry-run"], changed).stdout
    assert "3 finished, 0 to run" in before
    assert "2 finished, 1 to run" in after  # the surgical cell: its code changed; my_bss's and scratch's did not
    row = next(line for line in after.splitlines() if "/surgical/" in line)
    assert "to run" in row


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    """A plugin whose import fails (it needs a module nobody installed), installed with pip."""
    site, source = tmp_path_factory.mktemp("broken-site"), tmp_path_factory.mktemp("broken") / "src"
    (source / "transferbench_broken").mkdir(parents=True)
    (source / "transferbench_broken" / "__init__.py").write_text("import a_module_nobody_installed\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "transferbench-broken"\nversion = "0.3.0"\n'
        '[project.entry-points."transferbench.strategies"]\nbroken = "transferbench_broken"\n'
    )
    return _pip_install(source, site)


def test_a_plugin_that_cannot_be_imported_fails_alone(broken_site, tmp_path):
    warning = (
        "warning: the strategy plugin 'broken' (transferbench_broken, from transferbench-broken 0.3.0) cannot be "
        "imported: ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    )
    listed = _bench(["list", "strategies"], broken_site)
    assert listed.returncode == 0 and "finetune" in listed.stdout
    assert listed.stderr.strip() == warning  # one line, no traceback
    fine, uses_it = tmp_path / "fine.yaml", tmp_path / "uses_it.yaml"
    fine.write_text(yaml.safe_dump(tiny_experiment()))
    uses_it.write_text(yaml.safe_dump(tiny_experiment(strategies=["broken", "scratch"])))
    assert _bench(["validate", str(fine)], broken_site).returncode == 0
    out = _bench(["validate", str(uses_it)], broken_site)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown strategy 'broken'" in out.stderr and "cannot be imported: ModuleNotFoundError" in out.stderr


def test_the_docs_feature_penalty_example_is_the_plugins_and_runs_end_to_end(plugin_matrix):
    doc = (Path(__file__).parents[1] / "docs" / "adding-a-strategy.md").read_text()
    example = doc.split("## A second example")[1].split("```python\n")[1].split("```")[0]
    assert example in (PLUGIN / "transferbench_surgical" / "my_bss.py").read_text()
    runs = _plugin_runs(plugin_matrix[1], "my_bss")
    assert runs.loc[runs["tags.stage"] == "trial", "params.eta"].notna().all()
    assert runs.loc[runs["tags.stage"] == "final", "metrics.test_acc"].notna().all()
