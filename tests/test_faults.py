"""Fault points: armed by name through the environment, they stop a process exactly there; unarmed, nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def test_an_unarmed_point_does_nothing(monkeypatch):
    monkeypatch.delenv(faults.FAULTS_ENV, raising=False)
    faults.armed.cache_clear()
    faults.point("cell.trial")
    assert faults.armed() == {}


def test_kill_fires_at_the_nth_time_the_point_is_reached():
    proc = _run({faults.FAULTS_ENV: "cell.trial@2:kill"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and out.split("\n")[:2] == ["before 0", "before 1"]
    assert "before 2" not in out


def test_interrupt_is_a_ctrl_c_there():
    proc = _run({faults.FAULTS_ENV: "cell.trial:interrupt"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT and out == "before 0\n"  # an uncaught KeyboardInterrupt, as Ctrl-C


def test_pause_waits_for_its_release_and_a_point_fires_once_across_processes(tmp_path: Path):
    env = {faults.FAULTS_ENV: "cell.trial:pause", faults.FAULT_DIR_ENV: str(tmp_path)}
    first = _run(env)
    while not (tmp_path / "cell.trial").exists():
        assert first.poll() is None
        time.sleep(0.01)
    assert int((tmp_path / "cell.trial").read_text()) == first.pid
    second = _run(env)  # the point has fired: it runs through
    assert second.communicate(timeout=60)[0].endswith("done\n") and first.poll() is None
    (tmp_path / "cell.trial.release").touch()
    assert first.communicate(timeout=60)[0] == "before 0\nbefore 1\nbefore 2\ndone\n"


def test_a_point_scoped_to_spawned_workers_does_not_fire_in_the_main_process(monkeypatch):
    monkeypatch.setenv(faults.FAULTS_ENV, "cell.trial:kill:worker")
    faults.armed.cache_clear()
    try:
        faults.point("cell.trial")  # alive: this is no spawned worker
        assert faults.armed()["cell.trial"].reached == 0
    finally:
        faults.armed.cache_clear()


@pytest.mark.parametrize("spec", ["cell.trail:kill", "cell.trial:explode", "cell.trial@x:kill", "cell.trial:kill:all"])
def test_a_bad_spec_names_the_grammar(monkeypatch, spec):
    monkeypatch.setenv(faults.FAULTS_ENV, spec)
    faults.armed.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"POINT\[@N\]:ACTION"):
            faults.point("cell.trial")
    finally:
        faults.armed.cache_clear()
