"""MLflow: one experiment per experiment file, a parent run per cell, nested runs per trial and final seed, a run
per backbone with its transferability scores, a summary run with the report, and the experiment's description."""

from __future__ import annotations

import gc
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import paths
from bench.matrix import Cell
from bench.strategies import STRATEGIES

if TYPE_CHECKING:
    from bench.loop import EvalStats

NOTE = "mlflow.note.content"  # the tag MLflow shows as an experiment's or run's description
# Columns of the report's summary logged on each cell's parent run (examples_per_class: the budget as a number)
COMPARISONS = (
    "test_acc_mean",
    "test_acc_ci_low",
    "test_acc_ci_high",
    "gain_over_scratch",
    "gain_ci_low",
    "gain_ci_high",
    "p_improve",
    "examples_per_class",
)


def browse_hint(uri: str) -> str:
    """How to look at the runs of the store at ``uri``."""
    if uri == f"sqlite:///{(Path('results') / 'mlflow.db').resolve()}":  # the store `make ui` serves
        return "`make ui` (MLflow)"
    if uri.startswith(("http://", "https://")):
        return f"{uri} (MLflow)"
    return f"`mlflow ui --backend-store-uri {uri}`"


class Tracker:
    """Writes runs for one experiment. Cells whose parent run was left unfinished are resumed, not duplicated."""

    def __init__(self, uri: str, experiment: str) -> None:
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a server's run links, per run
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline, its thread raced with requests
        import mlflow

        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # store errors: reported once, by us
        paths.results_root().mkdir(parents=True, exist_ok=True)
        self.mlflow = mlflow
        self._open: set[str] = set()  # runs this process started and has not ended yet
        mlflow.set_tracking_uri(uri)
        self.experiment_id = self._experiment(uri, experiment)
        mlflow.set_experiment(experiment_id=self.experiment_id)

    def _experiment(self, uri: str, name: str) -> str:
        """The experiment's id, created if missing (by whichever of several starting processes comes first)."""
        from mlflow.exceptions import MlflowException

        existing = self.mlflow.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        # beside the sqlite store, artifacts go under results/ too (MLflow's default is ./mlruns)
        local = uri.startswith("sqlite:")
        artifacts = (paths.results_root() / "artifacts").resolve().as_uri() if local else None
        try:
            return self.mlflow.create_experiment(name, artifact_location=artifacts)
        except MlflowException:
            existing = self.mlflow.get_experiment_by_name(name)
            if existing is None:
                raise
            return existing.experiment_id

    def end_orphans(self, cell: Cell, finished_seeds: set[int]) -> None:
        """End the runs of ``cell`` that a dead or interrupted process left open: KILLED, or FINISHED for a final
        seed whose record was saved (the interrupt came as its run was ending). Only the holder of the cell's
        claim calls this, so no live process owns such a run."""
        client = self.mlflow.MlflowClient()
        runs = self.mlflow.search_runs(
            [self.experiment_id],
            filter_string=f"tags.cell_key = '{cell.key}' and attributes.status != 'FINISHED'",
            output_format="list",
        )
        for run in runs:
            tags = run.data.tags
            if tags.get("stage") == "final" and int(tags.get("seed", -1)) in finished_seeds:
                client.set_terminated(run.info.run_id, "FINISHED")
            elif run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")

    def _cell_runs(self) -> list[Any]:
        """Every cell's parent run in this experiment."""
        return self.mlflow.search_runs(
            [self.experiment_id], filter_string="tags.stage = 'cell'", output_format="list", max_results=50_000
        )

    def _log_changed(self, run: Any, values: dict[str, float]) -> None:
        """``values`` as metrics of ``run`` where it lacks them or holds another value (NaN is not logged), in one
        batch: a report written again adds no points."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        logged = run.data.metrics
        metrics = [Metric(k, v, now, 0) for k, v in values.items() if not math.isnan(v) and logged.get(k) != v]
        if metrics:
            self.mlflow.MlflowClient().log_batch(run.info.run_id, metrics=metrics)

    def log_comparisons(self, summary: Any) -> None:
        """Each cell's row of the report's summary, as the ``COMPARISONS`` metrics of its parent run, where they are
        missing or changed: cells finish in any order, so gains are logged once both cells of a pair exist. With
        them the runs table groups by strategy and charts accuracy, gain and probability of improvement against the
        budget."""
        by_key = {run.data.tags.get("cell_key"): run for run in self._cell_runs()}
        for row in summary.itertuples():
            if (run := by_key.get(row.cell_key)) is not None:
                self._log_changed(run, {name: float(getattr(row, name)) for name in COMPARISONS})

    def log_transferability(self, points: Any, scores: list[str]) -> None:
        """Transferability scores (means over seeds, from ``scores.per_backbone``): ``transfer.<score>`` on the cell
        runs of pretrained strategies with that backbone, dataset and budget, and ``<score>.<dataset>.<budget>`` on
        one run per backbone (``stage=transferability``), so backbones can be compared side by side in the UI; both
        where missing or changed."""
        pretrained = {name for name, cls in STRATEGIES if cls.pretrained}
        by_group: dict[tuple[str, str, str], list[Any]] = {}
        for run in self._cell_runs():
            t = run.data.tags
            if t.get("strategy") in pretrained:
                by_group.setdefault((t.get("dataset"), t.get("backbone"), t.get("budget")), []).append(run)
        for point in points.itertuples():
            values = {f"transfer.{s}": float(getattr(point, s)) for s in scores}
            for run in by_group.get((point.dataset, point.backbone, str(point.budget)), []):
                self._log_changed(run, values)
        client = self.mlflow.MlflowClient()
        for backbone, rows in points.groupby("backbone", sort=False):
            runs = self.mlflow.search_runs(
                [self.experiment_id],
                filter_string=f"tags.stage = 'transferability' and tags.backbone = '{backbone}'",
                output_format="list",
            )
            run = (
                runs[0]
                if runs
                else client.create_run(
                    self.experiment_id,
                    run_name=f"transferability/{backbone}",
                    tags={"stage": "transferability", "backbone": backbone},
                )
            )
            self._log_changed(
                run, {f"{s}.{p.dataset}.{p.budget}": float(getattr(p, s)) for p in rows.itertuples() for s in scores}
            )
            client.set_terminated(run.info.run_id, "FINISHED")

    def _existing_parent(self, cell: Cell) -> str | None:
        runs = self.mlflow.search_runs(
            [self.experiment_id],
            filter_string=f"tags.cell_key = '{cell.key}' and tags.stage = 'cell'",
            output_format="list",
        )
        return runs[0].info.run_id if runs else None

    @contextmanager
    def _run(self, **start: Any) -> Iterator[None]:
        """``mlflow.start_run(**start)``, ended FAILED on an error, FINISHED otherwise. On Ctrl-C or SIGTERM it is
        left open for ``stopped`` to end KILLED once the interrupt has unwound (see there)."""
        run_id = self.mlflow.start_run(**start).info.run_id
        self._open.add(run_id)
        try:
            yield
        except KeyboardInterrupt:
            raise
        except BaseException:
            self._end(run_id, "FAILED")
            raise
        self._end(run_id, "FINISHED")

    def _end(self, run_id: str, status: str) -> None:
        self.mlflow.end_run(status)
        self._open.discard(run_id)

    def stopped(self, work: Callable[[], None]) -> type[KeyboardInterrupt] | None:
        """Run ``work``; if Ctrl-C or SIGTERM stops it, end as KILLED every run it left open and return the
        interrupt's type (for the caller to raise once its own clean-up is done), else None.

        The runs are ended after the interrupt has unwound, not while it does: an interrupt that lands inside a
        store write (an MLflow metric, an Optuna trial) can leave that write's connection in the middle of its
        transaction, holding the store's lock, referenced only by the interrupt's traceback; writing before that
        traceback is freed waits for the lock and fails."""
        try:
            work()
        except KeyboardInterrupt as stop:
            interrupt = type(stop)
        else:
            return None
        gc.collect()  # the traceback is gone: its cut-off connections are freed, rolled back and unlocked
        self.end_open_runs()
        return interrupt

    def end_open_runs(self) -> None:
        """After an interrupt: end as KILLED every run this process left RUNNING, wherever the interrupt landed
        (even inside MLflow's own start or end of a run)."""
        client = self.mlflow.MlflowClient()
        while self.mlflow.active_run() is not None:
            self._open.add(self.mlflow.active_run().info.run_id)
            self.mlflow.end_run("KILLED")
        for run_id in self._open:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, "KILLED")
        self._open.clear()

    @contextmanager
    def cell_run(self, cell: Cell, params: dict[str, Any], environment: dict[str, str] | None = None) -> Iterator[None]:
        """The cell's parent run (resumed when a stopped run left it), tagged with the cell and ``environment``."""
        environment = environment or {}
        run_id = self._existing_parent(cell)
        if run_id is not None:
            with self._run(run_id=run_id):
                self.mlflow.set_tags({f"env.{k}": v for k, v in environment.items()})
                yield
            return
        tags = {**cell.tags, "stage": "cell", **{f"env.{k}": v for k, v in environment.items()}}
        with self._run(run_name=cell.run_name, tags=tags):
            self.mlflow.log_params(params)
            yield

    def log_report(self, experiment: str, files: list[Path]) -> str:
        """The report's files on the experiment's summary run (``stage=summary``), created once and reused; return
        the run's name."""
        runs = self.mlflow.search_runs(
            [self.experiment_id], filter_string="tags.stage = 'summary'", output_format="list"
        )
        kwargs = (
            {"run_id": runs[0].info.run_id}
            if runs
            else {"run_name": f"{experiment}/summary", "tags": {"stage": "summary"}}
        )
        names = []

        def log() -> None:
            with self._run(**kwargs):
                for f in files:
                    self.mlflow.log_artifact(str(f))
                names.append(self.mlflow.active_run().info.run_name)

        if (interrupt := self.stopped(log)) is not None:  # the summary run ends KILLED, as cells' runs do
            raise interrupt
        return names[0]

    def set_description(self, text: str) -> None:
        """The experiment's description in the MLflow UI (markdown), replacing the one before."""
        self.mlflow.MlflowClient().set_experiment_tag(self.experiment_id, NOTE, text)

    @contextmanager
    def child_run(
        self, name: str, stage: str, params: dict[str, Any], tags: dict[str, str], reuse: bool = False
    ) -> Iterator[None]:
        """A run nested in the active one. With ``reuse``, an unfinished run of the same name and stage under the
        same parent (left by an interrupted process) is continued instead of starting a duplicate."""
        earlier = self._unfinished_child(name, stage) if reuse else None
        if earlier is not None:
            with self._run(run_id=earlier, nested=True):
                yield
            return
        with self._run(run_name=name, nested=True, tags={**tags, "stage": stage}):
            self.mlflow.log_params(params)
            yield

    def _unfinished_child(self, name: str, stage: str) -> str | None:
        parent = self.mlflow.active_run().info.run_id
        runs = self.mlflow.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.mlflow.parentRunId = '{parent}' and tags.stage = '{stage}' "
                f"and tags.mlflow.runName = '{name}' and attributes.status != 'FINISHED'"
            ),
            output_format="list",
        )
        return runs[0].info.run_id if runs else None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def log_run(self, history: list[EvalStats], metrics: dict[str, float], tags: dict[str, str] | None = None) -> None:
        """A finished training run's curve (``train_loss``, ``val_acc``, ``epoch`` at each validation, MLflow's step
        being the optimiser step; the validation of the starting weights has no training loss), its final
        ``metrics`` and ``tags``, in one write to the active run."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        logged = [
            Metric(key, float(value), now, s.step)
            for s in history
            for key, value in (("train_loss", s.train_loss), ("val_acc", s.val_acc), ("epoch", s.epoch))
            if not math.isnan(value)
        ]
        logged += [Metric(key, float(value), now, 0) for key, value in metrics.items()]
        run = self.mlflow.active_run()
        self.mlflow.MlflowClient().log_batch(
            run.info.run_id, metrics=logged, tags=[RunTag(k, v) for k, v in (tags or {}).items()]
        )

    def log_artifact(self, path: str | Path) -> None:
        self.mlflow.log_artifact(str(path))
