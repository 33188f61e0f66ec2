"""The matrix on Ray, on real parts: a Ray cluster started by ``--ray``, a two-node cluster with PostgreSQL and an
MLflow tracking server (docs/cluster.md's walkthrough, ``docs/cluster_local.sh``), a Ray worker killed mid-cell,
GPU shares scheduled as configured on logical GPUs, and Ctrl-C on the driver. The runs join their clusters in
each of the ways ``--ray`` offers: started here, a head's address, and ``ray://`` (Ray Client).

Every run is the real command line on a tiny real matrix; every check reads the stores through MLflow's and
Optuna's APIs: each cell and seed exactly once, nested runs intact, and the summary of a single-process run.
Every process a test starts is stopped by its own PID (Ray's ``Cluster`` stops the nodes it started).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import tiny_experiment
from exactly_once import assert_exactly_once, runs, sqlite_stores

SEEDS, TRIALS, CELLS = 2, 2, 3
ROOT = Path(__file__).resolve().parents[1]
# Ray clusters, servers and their many processes: these tests run one at a time, on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("cluster")


def _bench(results: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench", "--results", str(results), *args]


def _run(command: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _summary(results: Path) -> pd.DataFrame:
    return pd.read_csv(results / "tiny" / "summary.csv")


@pytest.fixture(scope="module")
def ray_token() -> Iterator[None]:
    """Token authentication, as Ray 2.59+ does by default, with a token of these tests' own (never ~/.ray's);
    one for the module, since a process that has talked to a cluster keeps the token it used."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes(ray_token):
    """A Ray cluster of two nodes on this machine: a head with one CPU and a Ray Client server (``ray://``), a node
    with three CPUs and a logical GPU."""
    from ray.cluster_utils import Cluster

    port = _free_port()
    head = {"num_cpus": 1, "include_dashboard": False, "ray_client_server_port": port}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    cluster.add_node(num_cpus=3, num_gpus=1)
    cluster.wait_for_nodes()
    cluster.client_address = f"ray://127.0.0.1:{port}"
    yield cluster
    cluster.shutdown()


def _pg_missing() -> str | None:
    if shutil.which("pg_config") is None:
        return "needs PostgreSQL's programs (Debian: postgresql-15; `pg_config --bindir` finds them)"
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        return "PostgreSQL refuses to run as root and there is no postgres user to run it as"
    return None


CHECK = """
import os, sys
sys.path.insert(0, "tests")
from exactly_once import assert_exactly_once
runs = assert_exactly_once(os.environ["MLFLOW_TRACKING_URI"], os.environ["TRANSFERBENCH_OPTUNA_STORAGE"],
                           "tiny", {cells}, {seeds}, {trials})
runs.to_csv(sys.argv[1], index=False)
"""


@pytest.mark.slow
@pytest.mark.skipif(_pg_missing() is not None, reason=str(_pg_missing()))
def test_the_cluster_walkthrough_runs_each_cell_once_on_two_nodes_with_postgres_and_an_mlflow_server(
    exp_file, reference, tmp_path, ray_token
):
    """docs/cluster.md step by step (docs/cluster_local.sh): the stores are servers, the nodes log to them."""
    results, table = tmp_path / "results", tmp_path / "runs.csv"
    check = [sys.executable, "-c", CHECK.format(cells=CELLS, seeds=SEEDS, trials=TRIALS), str(table)]
    out = _run(
        ["bash", str(ROOT / "docs" / "cluster_local.sh"), str(exp_file), *check],
        BIN=str(Path(sys.executable).parent),
        TRANSFERBENCH_RESULTS=str(results),
        TRANSFERBENCH_OPTUNA_STORAGE="",
        MLFLOW_TRACKING_URI="",
    ).stdout
    assert "3 cell(s) to train on the Ray cluster (2 CPUs, 0 GPUs)" in out
    pd.testing.assert_frame_equal(_summary(results), reference)
    runs = pd.read_csv(table)
    assert runs[runs.stage == "cell"]["env.ray_node"].nunique() == 2, "both nodes trained cells"
    assert not (results / "mlflow.db").exists() and not (results / "optuna.db").exists()
    assert not (results / "artifacts").exists(), "artifacts went through the server, not to a local folder"


def _paused_in_a_trial(tmp_path: Path) -> dict[str, str]:
    """Arms the fault point that pauses the first task to reach its second trial (its first one done), leaving
    its PID in ``tmp_path/faults/cell.trial`` (bench/faults.py); the driver passes it on to every task."""
    (tmp_path / "faults").mkdir()
    return {"TRANSFERBENCH_FAULTS": "cell.trial@2:pause", "TRANSFERBENCH_FAULT_DIR": str(tmp_path / "faults")}


def _ends(pid: int, within: float = 60) -> bool:
    """Whether process ``pid`` ends within ``within`` seconds: Ray stops a cluster's workers after its driver
    has exited, a moment later on a busy machine."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _paused_pid(tmp_path: Path, proc: subprocess.Popen) -> int:
    file = tmp_path / "faults" / "cell.trial"
    end = time.monotonic() + 300
    while not file.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert file.exists(), f"no task paused in a trial while the run lasted: {proc.communicate()}"
    return int(file.read_text())


@pytest.mark.slow
def test_a_ray_worker_killed_mid_cell_is_retried_and_nothing_is_counted_twice(
    tmp_path, reference, two_nodes, monkeypatch
):
    exp_file = tmp_path / "exp" / "tiny.yaml"
    exp_file.parent.mkdir()
    exp_file.write_text(yaml.safe_dump(tiny_experiment(training={"epochs": 2, "batch_size": 16, "device": "cpu"})))
    results = tmp_path / "results"
    proc = subprocess.Popen(
        _bench(results, "run", str(exp_file), "--ray", two_nodes.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **_paused_in_a_trial(tmp_path)},
    )
    pid = _paused_pid(tmp_path, proc)  # a task holds its cell's claim, one trial done
    assert pid != proc.pid  # a Ray worker process, not the driver
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    pd.testing.assert_frame_equal(_summary(results), reference)
    assert_exactly_once(*sqlite_stores(results), "tiny", CELLS, SEEDS, TRIALS)


def _overlaps(a: pd.Series, b: pd.Series) -> bool:
    """Whether two cells' tasks ran at once: from Ray starting the task to the end of the cell's run."""
    start_a, start_b = 1000 * float(a["env.ray_task_started"]), 1000 * float(b["env.ray_task_started"])
    return start_a < b.end and start_b < a.end


@pytest.mark.slow
def test_gpu_shares_frozen_cells_share_a_gpu_and_trained_cells_have_one_to_themselves(tmp_path, two_nodes):
    exp = tiny_experiment(
        strategies=["feature_extraction", "finetune"],
        budgets=[7, 9],  # 3 and 4 of them validate
        tuning={"n_trials": 4},  # cells of a few seconds: longer than Ray takes to start a second worker
        cluster={"gpus_frozen": 0.5, "gpus_trained": 1},
    )
    exp_file = tmp_path / "tiny.yaml"
    exp_file.write_text(yaml.safe_dump(exp))
    results = tmp_path / "results"
    _run(_bench(results, "run", str(exp_file), "--ray", two_nodes.client_address))  # joined as a Ray Client
    runs = assert_exactly_once(*sqlite_stores(results), "tiny", 4, SEEDS, 4)
    cells = runs[runs.stage == "cell"]
    gpu_node = {n for n in cells["env.ray_node"]}
    assert len(gpu_node) == 1, "every cell asked for a GPU, so all ran on the one node that has one"
    assert cells["env.cuda_visible_devices"].eq("0").all()  # each saw the GPU Ray gave it
    frozen, trained = cells[cells.strategy == "feature_extraction"], cells[cells.strategy == "finetune"]
    assert frozen["env.ray_resources"].eq("CPU=1, GPU=0.5").all()
    assert trained["env.ray_resources"].eq("CPU=1, GPU=1").all()
    a, b = (row for _, row in frozen.iterrows())
    assert _overlaps(a, b), "the two frozen-backbone cells, half a GPU each, ran at once"
    for _, cell in trained.iterrows():
        others = cells[cells.run != cell.run]
        assert not any(_overlaps(cell, other) for _, other in others.iterrows()), "a whole GPU is not shared"


def test_a_cluster_with_nodes_elsewhere_refuses_sqlite_stores_and_says_what_to_set():
    from bench.config import ConfigError
    from bench.execution.cluster import check_stores

    sqlite, server, pg = "sqlite:////r/mlflow.db", "http://mlflow:5000", "postgresql://bench@db/optuna"
    with pytest.raises(ConfigError) as err:
        check_stores(sqlite, "sqlite:////r/optuna.db", ["10.0.0.7"])
    message = str(err.value)
    assert "10.0.0.7" in message and "--tracking-uri" in message and "--optuna-storage" in message
    assert "docs/cluster.md" in message
    with pytest.raises(ConfigError, match="the Optuna storage sqlite"):
        check_stores(server, "sqlite:////r/optuna.db", ["10.0.0.7"])
    check_stores(server, pg, ["10.0.0.7"])  # servers every node reaches
    check_stores(sqlite, "sqlite:////r/optuna.db", [])  # every node on this machine


def test_nodes_on_this_machine_are_told_from_nodes_elsewhere():
    from bench.execution.cluster import _on_this_machine

    assert _on_this_machine("127.0.0.1", "10.1.2.3") and _on_this_machine("10.1.2.3", "10.1.2.3")
    assert not _on_this_machine("203.0.113.9", "127.0.0.1")  # TEST-NET-3: never an address of a real machine


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ({"ray": "nowhere"}, "Ray address 'nowhere'"),
        ({"ray": "host:port"}, "'local' (start a cluster here)"),
        ({"gpus_trained": 1.5}, "Ray shares a GPU only below 1"),
        ({"gpus_frozen": -0.5}, "greater than or equal to 0"),
        ({"gpu_frozen": 0.5}, "did you mean 'gpus_frozen'"),
    ],
)
def test_cluster_settings_are_checked(cluster, message):
    from bench import config

    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.parse(tiny_experiment(cluster=cluster))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("address", "env", "message"),
    [
        ("no-port", {}, "error: --ray: Ray address 'no-port'"),
        ("127.0.0.1:1", {}, "error: --ray 127.0.0.1:1: nothing answers at 127.0.0.1:1 (Connection refused)"),
        ("auto", {"RAY_ADDRESS": "127.0.0.1:1"}, "error: --ray auto: nothing answers at 127.0.0.1:1"),
    ],
)
def test_a_ray_address_where_nothing_answers_is_one_error_line_within_seconds(
    exp_file, tmp_path, address, env, message
):
    done = subprocess.run(
        _bench(tmp_path, "run", str(exp_file), "--ray", address),
        capture_output=True,
        text=True,
        timeout=60,  # Ray alone retries such an address for many minutes
        env={**os.environ, **env},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(message) and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_ctrl_c_on_a_driver_that_started_ray_here_stops_the_tasks_and_a_local_rerun_gives_the_single_process_summary(
    exp_file, reference, tmp_path, ray_token
):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        _bench(results, "run", str(exp_file), "--ray"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **_paused_in_a_trial(tmp_path)},
    )
    pid = _paused_pid(tmp_path, proc)  # a task is in its cell's second trial
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "3 cell(s) to train on the Ray cluster" in out
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted: ")
    assert _ends(pid), "the task's worker process outlived the cluster it was started on"
    tracking, optuna_url = sqlite_stores(results)
    interrupted = runs(tracking, "tiny")
    assert "RUNNING" not in set(interrupted.status)
    started = interrupted.query("stage == 'cell'")
    assert len(started) and started["env.ray_resources"].eq("CPU=1").all()  # training.threads CPUs, no GPU
    _run(_bench(results, "run", str(exp_file)))  # resumed in this process: what Ray left is taken over
    pd.testing.assert_frame_equal(_summary(results), reference)
    assert_exactly_once(tracking, optuna_url, "tiny", CELLS, SEEDS, TRIALS)
