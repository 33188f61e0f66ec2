"""Fault points: armed by name through the environment, they stop a process exactly there; unarmed, nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import faults

SCRIPT = """
import sys
from bench import faults
for i in range(3):
    print("before", i, flush=True)
    faults.point("cell.trial")
print("done", flush=True)
"""


def _run(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )


def test_an_unarmed_point_does_nothing(arm):
    arm("")
    faults.point("cell.trial")
    assert faults.armed() == {}


def test_kill_fires_at_the_nth_time_the_point_is_reached():
    proc = _run({faults.FAULTS_ENV: "cell.trial@2:kill"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and out.split("\n")[:2] == ["before 0", "before 1"]
    assert "before 2" not in out


@pytest.fixture
def arm(monkeypatch):
    """Arms fault points in this process, as a test's environment arms them in the processes it starts."""

    def armed(spec: str, folder: Path | None = None) -> None:
        monkeypatch.setenv(faults.FAULTS_ENV, spec)
        if folder is not None:
            monkeypatch.setenv(faults.FAULT_DIR_ENV, str(folder))
        faults.armed.cache_clear()

    yield armed
    faults.armed.cache_clear()


def test_interrupt_is_a_ctrl_c_there(arm):
    arm("cell.final_seed@2:interrupt")
    faults.point("cell.final_seed")  # the 1st time: nothing
    with pytest.raises(KeyboardInterrupt):
        faults.point("cell.final_seed")


def test_pause_waits_for_its_release_and_a_point_fires_once_across_processes(arm, tmp_path: Path):
    arm("cell.trial:pause", tmp_path)
    paused = threading.Thread(target=faults.point, args=("cell.trial",))
    paused.start()
    while not (tmp_path / "cell.trial").exists():
        time.sleep(0.01)
    assert int((tmp_path / "cell.trial").read_text()) == os.getpid()
    other = _run({faults.FAULTS_ENV: "cell.trial:pause", faults.FAULT_DIR_ENV: str(tmp_path)})
    assert other.communicate(timeout=60)[0].endswith("done\n")  # the point has fired: another process runs through
    paused.join(timeout=0.2)
    assert paused.is_alive()  # still waiting
    (tmp_path / "cell.trial.release").touch()
    paused.join(timeout=10)
    assert not paused.is_alive()


def test_a_point_scoped_to_spawned_workers_does_not_fire_in_the_main_process(arm):
    arm("cell.trial:kill:worker")
    faults.point("cell.trial")  # alive: this is no spawned worker
    assert faults.armed()["cell.trial"].reached == 0


@pytest.mark.parametrize("spec", ["cell.trail:kill", "cell.trial:explode", "cell.trial@x:kill", "cell.trial:kill:all"])
def test_a_bad_spec_names_the_grammar(arm, spec):
    arm(spec)
    with pytest.raises(ValueError, match=r"POINT\[@N\]:ACTION"):
        faults.point("cell.trial")
