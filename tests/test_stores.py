"""The stores are built whole or not at all; a half-made one is rebuilt, one with results is never touched."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from bench import stores


def _uris(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"


def test_fresh_stores_are_created_once_in_wal_mode_with_the_claims_table(tmp_path):
    tracking, optuna = _uris(tmp_path)
    assert stores.prepare(tracking, optuna) == []
    assert stores.prepare(tracking, optuna) == []  # opening a whole store again changes nothing
    for name in ("mlflow.db", "optuna.db"):
        with sqlite3.connect(tmp_path / name) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "transferbench_claims" in sa.inspect(sa.create_engine(optuna)).get_table_names()
    assert not list(tmp_path.glob(".*.tmp*"))


def test_a_half_created_store_is_moved_aside_and_rebuilt(tmp_path):
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    tracking, optuna = _uris(tmp_path)
    engine = sa.create_engine(tracking)
    InitialBase.metadata.create_all(engine)  # the first tables, then a kill in the middle of a migration:
    with engine.begin() as c:  # what MLflow's batch migration had left, as found after such kills
        c.execute(sa.text("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)"))
    (tmp_path / ".mlflow.db.123-abcd.tmp").write_text("a build killed earlier")
    repaired = stores.prepare(tracking, optuna)
    assert len(repaired) == 1 and "half-created" in repaired[0]
    assert len(list(tmp_path.glob("mlflow.db.broken-*"))) == 1 and not list(tmp_path.glob(".*.tmp"))
    assert stores.prepare(tracking, optuna) == []


def test_a_store_with_results_that_cannot_be_opened_is_reported_with_the_fix(tmp_path):
    tracking, optuna = _uris(tmp_path)
    stores.prepare(tracking, optuna)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("INSERT INTO experiments (name, lifecycle_stage) VALUES ('x', 'active')")
        db.execute("INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage) VALUES ('r', 1, 'active')")
        db.execute("UPDATE alembic_version SET version_num = 'an-older-version'")
    with pytest.raises(stores.StoreError, match=r"holds results.*`mlflow db upgrade sqlite:///"):
        stores.prepare(tracking, optuna)
    assert (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("tracking", "optuna", "message"),
    [
        ("http://127.0.0.1:9", "sqlite:///{tmp}/optuna.db", "cannot reach the MLflow tracking server at http://127"),
        ("sqlite:///{tmp}/mlflow.db", "postgresql://bench:secret@127.0.0.1:9/optuna", "bench:\\*\\*\\*@127.0.0.1:9"),
    ],
)
def test_a_server_that_does_not_answer_is_named_before_any_work(tmp_path, tracking, optuna, message):
    with pytest.raises(stores.StoreError, match=message) as err:
        stores.prepare(tracking.format(tmp=tmp_path), optuna.format(tmp=tmp_path))
    assert "secret" not in str(err.value) and "docs/cluster.md" in str(err.value)


def test_a_new_store_is_a_copy_of_an_empty_one_that_runs_no_migration_and_keeps_artifacts_in_its_folder(
    tmp_path, monkeypatch
):
    import alembic.command
    import mlflow

    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(first))
    stores.prepare(*_uris(first))  # builds the empty stores of these library versions once (or finds them)
    migrations = []
    monkeypatch.setattr(alembic.command, "upgrade", lambda *a, **k: migrations.append(a))
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(second))
    tracking, optuna = _uris(second)
    assert stores.prepare(tracking, optuna) == [] and migrations == []  # copied, not migrated
    client = mlflow.MlflowClient(tracking)
    assert client.get_experiment("0").artifact_location == (second / "artifacts").resolve().as_uri() + "/0"
    run = client.create_run(client.create_experiment("copied"))
    client.log_metric(run.info.run_id, "acc", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.5}
    assert "transferbench_claims" in sa.inspect(sa.create_engine(optuna)).get_table_names()
