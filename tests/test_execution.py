"""Exactly once, whatever happens: kills at any moment, two runs at once, Ctrl-C, a worker pool, a full disk.

Each test runs the real command line in subprocesses on a tiny real matrix, kills or interrupts it where it
hurts, reruns it, and checks the stores: one parent run per cell, one FINISHED final run per (cell, seed),
nothing left RUNNING, and the same summary as a run nobody interrupted.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from exactly_once import assert_exactly_once, sqlite_stores

from bench import core_locks, environment

SEEDS, TRIALS, CELLS = 2, 2, 3
WAITING = "waits at idle CPU priority and starts when a core frees up"
pytestmark = pytest.mark.slow  # every test here but one starts `bench` processes


def _bench(results: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench", "--results", str(results), *args]


def _start(
    results: Path, exp_file: Path, *extra: str, env: dict[str, str] | None = None, faults: str = ""
) -> subprocess.Popen:
    """``bench run`` on one worker, with the fault points ``faults`` armed (bench/faults.py), their files in
    ``results``'s sibling folder ``faults``."""
    armed = {"TRANSFERBENCH_FAULTS": faults, "TRANSFERBENCH_FAULT_DIR": str(_fault_dir(results))} if faults else {}
    return subprocess.Popen(
        _bench(results, "run", str(exp_file), *extra),
        env={**os.environ, "TRANSFERBENCH_WORKERS": "1", **armed, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _fault_dir(results: Path) -> Path:
    folder = results.parent / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _fired(results: Path, point: str, proc: subprocess.Popen) -> int:
    """Wait until ``point`` fires (its file appears) and return the PID that fired it; fail if ``proc`` ends first."""
    file = _fault_dir(results) / point
    assert _wait_for(lambda: file.exists() or proc.poll() is not None), f"{point} never fired"
    assert file.exists(), f"the run ended before {point} fired: {proc.communicate()}"
    return int(file.read_text())


def _release(results: Path, point: str) -> None:
    """Let a process paused at ``point`` go on."""
    (_fault_dir(results) / f"{point}.release").write_text("")


def _line_containing(stream, text: str, timeout: float = 120) -> str:
    """Read ``stream`` line by line until a line contains ``text``; return everything read (failing on a
    timeout, or when the stream ends first)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
            if text in line:
                return
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen = ""
    while text not in seen:
        line = lines.get(timeout=timeout)
        assert line is not None, f"the output ended without {text!r}: {seen}"
        seen += line
    return seen


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _wait_for(predicate, timeout: float = 120, poll: float = 0.002) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return False


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return c.execute(sql).fetchall()


def _assert_exactly_once(results: Path) -> None:
    assert_exactly_once(*sqlite_stores(results), "tiny", CELLS, SEEDS, TRIALS)


def _no_temporaries(results: Path) -> None:
    assert not [p for p in results.rglob("*") if ".tmp" in p.name], "temporary files left behind"


def test_kill_9_at_several_moments_then_rerun_gives_the_uninterrupted_summary(exp_file, reference, tmp_path):
    results = tmp_path / "results"
    cells = results / "tiny" / "cells"
    moments = {  # each kill lands at a fault point; what a run after it finds done, each after the one before
        "stores.create": lambda: not (results / "mlflow.db").exists() and any(results.glob(".mlflow.db.*.tmp")),
        "cell.final_seed@2": lambda: len(list(cells.glob("*/seed0.json"))) == 1 and not list(cells.glob("*.json")),
        # the first trial this run starts: after the interrupted cell and the probe's (which has no trials)
        "cell.trial": lambda: len(list(cells.glob("*.json"))) == 2,
    }
    for fault, state in moments.items():
        proc = _start(results, exp_file, faults=f"{fault}:kill")
        rc, out, err = _finish(proc)
        assert rc == -signal.SIGKILL, f"{fault} was not reached: {out[-2000:]} {err[-2000:]}"
        assert state(), f"after the kill at {fault}: {sorted(p.name for p in results.rglob('*'))}"
    rc, out, err = _finish(_start(results, exp_file))
    assert rc == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(results / "tiny" / "summary.csv"), reference)
    _assert_exactly_once(results)
    _no_temporaries(results)


def test_two_runs_started_at_once_split_the_matrix_and_both_succeed(exp_file, reference, tmp_path):
    temp = tmp_path / "temp"  # a lock folder of its own: other processes on this machine hold none of its cores
    temp.mkdir()
    results, env = tmp_path / "results", {"TMPDIR": str(temp)}
    first = _start(results, exp_file, env=env, faults="run.cores_held:pause")  # holds every core, then waits
    _fired(results, "run.cores_held", first)
    second = _start(results, exp_file, env=env)
    said = _line_containing(second.stdout, WAITING)  # it found every core taken
    assert not any(results.rglob("*.db")), "the second run opened the stores while it waited"
    _release(results, "run.cores_held")
    (rc1, out1, err1), (rc2, out2, err2) = _finish(first), _finish(second)
    out2 = said + out2
    assert (rc1, rc2) == (0, 0), err1 + err2
    assert WAITING not in out1
    assert out1.count("done ") + out2.count("done ") == CELLS  # each cell trained by one of them
    pd.testing.assert_frame_equal(pd.read_csv(results / "tiny" / "summary.csv"), reference)
    _assert_exactly_once(results)


def test_ctrl_c_during_a_final_seed_ends_runs_killed_and_the_rerun_reuses_them(exp_file, reference, tmp_path):
    results = tmp_path / "results"
    proc = _start(results, exp_file, faults="cell.final_seed@2:interrupt")  # as Ctrl-C while seed 1 trains
    rc, out, err = _finish(proc)
    assert rc == 130, out[-2000:] + err
    assert any((results / "tiny" / "cells").glob("*/seed0.json"))
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "interrupted: 0 of 3 cells finished" in err and "resumes" in err
    status = {s for (s,) in _query(results / "mlflow.db", "SELECT status FROM runs")}
    assert "RUNNING" not in status and "KILLED" in status
    rc, out, err = _finish(_start(results, exp_file))
    assert rc == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(results / "tiny" / "summary.csv"), reference)
    _assert_exactly_once(results)


def test_runs_cut_off_inside_a_store_write_are_ended_killed_without_waiting_for_its_lock(monkeypatch):
    """An interrupt can land in a store write after its insert and before its rollback: the session, kept alive by
    the interrupt's traceback (and by its own reference cycles), then holds the store's write lock. The runs are
    ended after the interrupt has unwound, so their clean-up neither waits a minute for that lock nor fails."""
    import sqlalchemy.orm
    from conftest import tiny_experiment

    from bench import config, stores
    from bench.matrix import expand
    from bench.tracking import Tracker

    exp = config.parse(tiny_experiment())
    where = stores.resolve(exp)
    stores.prepare(where.tracking, where.optuna)
    tracker = Tracker(where.tracking, exp.name)
    armed = {"commit": False, "close": False}
    real_commit, real_close = sqlalchemy.orm.Session.commit, sqlalchemy.orm.Session.close

    def cut_commit(self):
        if armed["commit"]:
            armed["commit"], armed["close"] = False, True
            self.flush()  # the insert is made: this connection now holds the write lock
            raise KeyboardInterrupt
        return real_commit(self)

    def cut_close(self):
        if armed["close"]:
            armed["close"] = False
            raise KeyboardInterrupt  # the second half of the cut: no rollback, the lock stays
        return real_close(self)

    monkeypatch.setattr(sqlalchemy.orm.Session, "commit", cut_commit)
    monkeypatch.setattr(sqlalchemy.orm.Session, "close", cut_close)

    def work() -> None:
        with tracker.cell_run(expand(exp)[0], {}):
            armed["commit"] = True
            tracker.log_metrics({"val_acc": 0.5})

    assert tracker.stopped(work) is KeyboardInterrupt
    assert not armed["commit"] and not armed["close"], "the write was not cut off as planned"
    status = [s for (s,) in _query(stores.sqlite_path(where.tracking), "SELECT status FROM runs")]
    assert status == ["KILLED"]


def test_a_run_started_while_every_core_trains_elsewhere_waits_before_any_work(
    exp_file, reference, tmp_path, monkeypatch
):
    temp = tmp_path / "temp"  # a lock folder of its own: other processes on this machine hold none of its cores
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    results, n = tmp_path / "results", environment.available_cores()
    with contextlib.ExitStack() as held:
        assert core_locks._take(held, n) == n  # as a run training on every core holds them
        proc = _start(results, exp_file, env={"TMPDIR": str(temp)}, faults="run.cores_held:pause")
        said = _line_containing(proc.stdout, WAITING)
        assert os.sched_getscheduler(proc.pid) == os.SCHED_IDLE, "it waits at idle priority"
        assert proc.poll() is None and not any(results.rglob("*.*")), "it wrote results while every core was taken"
    _fired(results, "run.cores_held", proc)  # the cores freed, it took them
    assert os.sched_getscheduler(proc.pid) == os.SCHED_OTHER, "holding its cores, it trains at normal priority"
    _release(results, "run.cores_held")
    rc, out, err = _finish(proc)
    assert rc == 0, err
    assert WAITING in said
    pd.testing.assert_frame_equal(pd.read_csv(results / "tiny" / "summary.csv"), reference)
    _assert_exactly_once(results)


def test_two_workers_give_the_single_worker_summary_and_a_killed_worker_is_replaced(exp_file, reference, tmp_path):
    results = tmp_path / "results"
    # this process (worker 1) waits in its second trial until the spawned worker 2 has killed itself in a final seed
    faults = "cell.trial@2:pause:main,cell.final_seed:kill:worker"
    proc = _start(results, exp_file, "--workers", "2", faults=faults)
    _fired(results, "cell.trial", proc)
    _fired(results, "cell.final_seed", proc)
    _release(results, "cell.trial")
    rc, out, err = _finish(proc)
    assert rc == 0, err
    assert "worker 2 died (exit code -9); a new one takes its cell over" in out
    pd.testing.assert_frame_equal(pd.read_csv(results / "tiny" / "summary.csv"), reference)
    _assert_exactly_once(results)


def _in_small_tmpfs(results: Path, size: str, command: list[str], read_only: bool = False) -> subprocess.Popen:
    """``command`` in a private mount namespace where ``results`` is a tmpfs of ``size`` (a disk that fills)."""
    results.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    script = f'mount -t tmpfs -o {options} tmpfs {results} && exec "$@"'
    return subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *command],
        env={**os.environ, "TRANSFERBENCH_WORKERS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f"mount -t tmpfs tmpfs {tmp_path}"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.parametrize("size", ["300k", "1600k"])  # while creating the stores; while training
def test_a_full_disk_gives_one_error_line_and_leaves_no_temporary_files(exp_file, tmp_path, size):
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("needs `unshare` and user namespaces to mount a small tmpfs as the results folder")
    results = tmp_path / "results"
    script = f"{_bench_command(results, exp_file)}; rc=$?; find {results} -name '*.tmp*'; exit $rc"
    proc = _in_small_tmpfs(results, size, ["sh", "-c", script])
    rc, out, err = _finish(proc)
    lines = err.strip().splitlines()
    assert rc == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: cannot write") and "no space left" in lines[0], err
    assert "resumes" in lines[0]
    assert ".tmp" not in out  # what `find` printed


def _bench_command(results: Path, exp_file: Path) -> str:
    return " ".join(_bench(results, "run", str(exp_file)))


def test_a_results_folder_that_cannot_be_written_is_refused_before_any_work(exp_file, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    rc = subprocess.run(_bench(not_a_folder, "run", str(exp_file)), capture_output=True, text=True)
    assert rc.returncode == 2 and rc.stderr.strip() == f"error: --results {not_a_folder}: not a folder; give a " + (
        "folder (it is created if missing)"
    )
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("needs `unshare` and user namespaces to mount a read-only results folder")
    proc = _in_small_tmpfs(tmp_path / "ro", "1m", _bench(tmp_path / "ro", "run", str(exp_file)), read_only=True)
    rc, out, err = _finish(proc)
    assert rc == 2 and err.strip().splitlines() == [
        f"error: --results {tmp_path / 'ro'}: cannot write there (Read-only file system); give a folder you can write"
    ]
