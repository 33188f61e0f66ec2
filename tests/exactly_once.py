"""What "every cell and seed exactly once" means in the stores, checked through MLflow's and Optuna's own APIs, so
the same check reads a sqlite file, an MLflow tracking server or a PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pandas as pd
from mlflow.entities import ViewType


def sqlite_stores(results: Path) -> tuple[str, str]:
    """The default stores of a results folder."""
    return f"sqlite:///{results / 'mlflow.db'}", f"sqlite:///{results / 'optuna.db'}"


def runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """Every run of ``experiment``: id, status, stage, cell key, seed, parent run id, start and end (ms)."""
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=10_000)
    rows = [
        {
            "run": r.info.run_id,
            "status": r.info.status,
            "stage": r.data.tags.get("stage"),
            "cell": r.data.tags.get("cell_key"),
            "strategy": r.data.tags.get("strategy"),
            "seed": r.data.tags.get("seed"),
            "parent": r.data.tags.get("mlflow.parentRunId"),
            "start": r.info.start_time,
            "end": r.info.end_time,
            **{k: v for k, v in r.data.tags.items() if k.startswith("env.")},
        }
        for r in found
    ]
    return pd.DataFrame(rows)


def assert_exactly_once(
    tracking_uri: str, optuna_url: str, experiment: str, cells: int, seeds: int, trials: int
) -> pd.DataFrame:
    """One FINISHED parent run per cell, its trial and final runs nested under it, one FINISHED final run per
    (cell, seed), one summary run, one study per tuned cell (all but the probe's) with ``trials`` counted trials,
    nothing left RUNNING. Returns the runs."""
    table = runs(tracking_uri, experiment)
    assert "RUNNING" not in set(table.status)
    parents = table[table.stage == "cell"]
    assert len(parents) == cells and parents.cell.is_unique and (parents.status == "FINISHED").all()
    assert (table.stage == "summary").sum() == 1  # the report's run, even when two processes report
    finals = table[(table.stage == "final") & (table.status == "FINISHED")]
    assert len(finals) == cells * seeds and not finals.duplicated(["cell", "seed"]).any()
    parent_of = dict(zip(parents.cell, parents.run, strict=True))
    children = table[table.stage.isin(["trial", "final"])]
    assert (children.parent == children.cell.map(parent_of)).all(), "a trial or final run is not under its cell"
    # every cell tunes in a study of its own, except the linear probe's (it cross-validates its C: no trials)
    tuned = set(table[table.stage == "trial"].cell)
    assert tuned == set(parents[parents.strategy != "feature_extraction"].cell)
    studies = optuna.get_all_study_summaries(optuna_url)
    assert len(studies) == len(tuned)
    for summary in studies:
        states = [t.state for t in optuna.load_study(study_name=summary.study_name, storage=optuna_url).trials]
        assert optuna.trial.TrialState.RUNNING not in states
        counted = [s for s in states if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
        assert len(counted) == trials, (summary.study_name, states)
    return table
