"""Claims on cells and cores of the machine: taken atomically, released by death, never held twice."""

from __future__ import annotations

import contextlib
import os
import socket
import time

import pytest
import sqlalchemy as sa

from bench import core_locks, environment, paths, stores
from bench.execution import claims
from bench.execution.claims import Claims


def _url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    stores.CLAIMS.create(sa.create_engine(url))
    return url


def _set_owner(url: str, key: str, owner: str, expires: float) -> None:
    with sa.create_engine(url).begin() as c:
        c.execute(sa.delete(claims._claims).where(claims._claims.c.key == key))
        c.execute(sa.insert(claims._claims).values(key=key, owner=owner, expires=expires))


def test_a_claim_is_held_by_one_owner_until_released(tmp_path):
    url = _url(tmp_path)
    first, second = Claims(url), Claims(url)
    assert first.try_claim("cell") and not second.try_claim("cell")
    assert first.try_claim("cell")  # its own claim, renewed
    assert second.holder("cell") == first.owner
    first.release("cell")
    assert second.try_claim("cell") and not first.try_claim("cell")


def test_a_dead_process_on_this_machine_loses_its_claim_at_once(tmp_path):
    url = _url(tmp_path)
    _set_owner(url, "cell", f"{socket.gethostname()}/999999999/dead", time.time() + 3600)
    assert Claims(url).try_claim("cell")


def test_a_claim_from_another_machine_holds_until_its_lease_expires(tmp_path):
    url = _url(tmp_path)
    _set_owner(url, "cell", "elsewhere/1/x", time.time() + 3600)
    assert not Claims(url).try_claim("cell")
    _set_owner(url, "cell", "elsewhere/1/x", time.time() - 1)
    assert Claims(url).try_claim("cell")


def test_cores_are_held_across_processes_and_set_the_torch_threads(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(core_locks, "_folder", lambda: tmp_path)
    n = environment.available_cores()
    with core_locks.hold(n) as held:
        assert held == n and torch.get_num_threads() == n
        with paths.file_lock(tmp_path / "core0.lock", blocking=False) as free:
            assert not free  # another holder (even another open of the file) finds it taken
    with paths.file_lock(tmp_path / "core0.lock", blocking=False) as free:
        assert free


@pytest.fixture
def own_cores(tmp_path, monkeypatch):
    """The cores of a lock folder of this test's own: other processes on this machine hold none of them."""
    monkeypatch.setattr(core_locks, "_folder", lambda: tmp_path)
    yield environment.available_cores()
    core_locks.keep(0)


def test_a_run_holds_every_free_core_from_its_start_and_hands_them_to_its_workers_without_a_gap(own_cores):
    n = own_cores
    assert (
        core_locks.reserve() == n and core_locks.free() == 0
    )  # before its start-up: a run started now finds them taken
    with core_locks.hold(1) as held:
        assert held == 1 and core_locks.free() == 0  # the worker's core came from the reservation
        core_locks.hand_over(n - 1)  # the other workers are about to take theirs
        assert core_locks.free() == n - 1
    assert core_locks.free() == n
    assert core_locks.reserve() == n
    core_locks.keep(1)  # one worker is all it needs
    assert core_locks.free() == n - 1


@pytest.mark.skipif(environment.available_cores() < 2, reason="needs a core that is busy and one that is free")
def test_a_core_free_for_an_instant_only_is_not_reserved(own_cores, tmp_path):
    import threading

    with contextlib.ExitStack() as handing:  # another run, about to hand core 0 to its worker
        assert handing.enter_context(paths.file_lock(tmp_path / "core0.lock", blocking=False))
        threading.Timer(0.1, handing.close).start()  # free from 0.1 s on, until its worker takes it (not here)
        assert core_locks.reserve(settle=0.5) == own_cores - 1  # core 0 was not free at the first look
    assert core_locks.free() == 1


def test_a_driver_waiting_for_stopped_tasks_gives_up_on_a_store_locked_past_its_busy_timeout(tmp_path, monkeypatch):
    import sqlite3
    import types

    from bench import errors, stores
    from bench.execution import cluster

    url = _url(tmp_path)
    _set_owner(url, "cell", f"{socket.gethostname()}/{os.getpid()}/alive", time.time() + 3600)
    monkeypatch.setattr(stores, "connect_args", lambda url: {"timeout": 0.2})
    lock = sqlite3.connect(tmp_path / "claims.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # as a process stopped in the middle of a write would hold it
    cell = types.SimpleNamespace(key="cell")
    started = time.monotonic()
    cluster._wait_for_release(url, [cell])  # returns instead of raising "database is locked"
    assert time.monotonic() - started < cluster.STOP_SECONDS  # it stopped looking, not waited for a live holder
    with pytest.raises(sa.exc.OperationalError) as locked:
        Claims(url).holder("cell")
    assert "stayed locked by another process" in errors.explain(locked.value)
    lock.rollback()
