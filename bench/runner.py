"""The matrix runner: expand the experiment, skip finished cells, tune and retrain the rest, collect results."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench import data, environment, results
from bench.config import Experiment
from bench.matrix import Cell, expand
from bench.metrics import classification_metrics
from bench.plots import confusion_matrix_png
from bench.tracking import Tracker, tracking_uri
from bench.trainer import CellTrainer, RunResult, pick_device
from bench.tuning import TuningFailedError, tune


def final_seed(trainer: CellTrainer, tracker: Tracker, hp: dict[str, Any], seed: int) -> dict[str, Any]:
    """Retrain the best hyperparameters at ``seed``, test, and log the curve and test metrics in one batch."""
    cell = trainer.cell
    name, tags = f"{cell.run_name}/seed{seed}", {**cell.tags, "seed": str(seed)}
    with tracker.child_run(name, "final", hp, tags, reuse=True):  # a seed interrupted earlier keeps its run
        run = trainer.run(hp, seed, test=True)
        metrics = classification_metrics(run.test_pred, run.test_true, trainer.dataset.classes)
        tracker.log_run(run.history, {**_scalars(metrics), **_run_metrics(run)})
        tracker.mlflow.log_dict(metrics, "test_metrics.json")
    return {
        "seed": seed,
        "val_acc": run.val_acc,
        "steps": run.steps,
        "train_counts": trainer.split(seed).train_counts,
        **metrics,
    }


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {"test_acc": metrics["test_acc"], "test_macro_f1": metrics["test_macro_f1"]}


def _run_metrics(run: RunResult) -> dict[str, float]:
    """Optimiser steps, and how the linear probe converged when the run had one."""
    if run.probe is None:
        return {"steps": run.steps}
    return {"steps": run.steps, "probe_iterations": run.probe.iterations, "probe_converged": run.probe.converged}


def run_cell(
    trainer: CellTrainer,
    tracker: Tracker,
    scratch: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Tune one cell, retrain its best hyperparameters at every final seed, and return its record.

    ``scratch`` is the finished scratch cell at the same backbone, dataset and budget, if any: the parent run
    then also carries the gain over it (paired by seed). ``env`` (versions, CPU, threads) is tagged and recorded.
    """
    cell, exp = trainer.cell, trainer.exp
    start = time.perf_counter()

    settings = {
        **exp.training.model_dump(exclude={"device", "threads"}),
        "n_trials": exp.tuning.n_trials,
        "seeds": exp.seeds,
        "val_per_class": exp.splits.val_per_class,
    }
    with tracker.cell_run(cell, settings, env):
        hp, study = tune(trainer, tracker, trainer.say)
        finals = []
        for seed in range(exp.seeds):
            record = results.load_seed(exp.name, cell, seed)
            if record is None:
                trainer.say(f"final seed {seed + 1}/{exp.seeds}")
                record = final_seed(trainer, tracker, hp, seed)
                results.save_seed(exp.name, cell, seed, record)
            finals.append(record)
        accs = [r["test_acc"] for r in finals]
        mean, std = statistics.fmean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0)
        f1 = statistics.fmean(r["test_macro_f1"] for r in finals)
        summary = {"test_acc_mean": mean, "test_acc_std": std, "test_macro_f1_mean": f1}
        if scratch is not None:
            summary["gain_over_scratch"] = statistics.fmean(
                r["test_acc"] - s["test_acc"] for r, s in zip(finals, scratch["seeds"], strict=True)
            )
        tracker.log_metrics(summary)
        _log_confusion(tracker, cell, finals, trainer.dataset.classes, mean)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return {
        **cell.tags,
        "run_name": cell.run_name,
        "best_hp": hp,
        "seeds": finals,
        "test_acc_mean": mean,
        "test_acc_std": std,
        "test_macro_f1_mean": f1,
        "trials_complete": states.count("COMPLETE"),
        "trials_pruned": states.count("PRUNED"),
        "seconds": round(time.perf_counter() - start, 1),
        "environment": env or {},
    }


def _log_confusion(tracker: Tracker, cell: Cell, finals: list[dict], classes: list[str], mean: float) -> None:
    """One confusion matrix per cell, summed over its final seeds, drawn once when the cell is done."""
    total = np.sum([r["confusion_matrix"] for r in finals], axis=0).tolist()
    title = f"{cell.run_name}: test acc {100 * mean:.1f} % (summed over {len(finals)} seeds)"
    with tempfile.TemporaryDirectory() as tmp:
        tracker.log_artifact(confusion_matrix_png(total, classes, title, Path(tmp) / "confusion_matrix.png"))


def run_experiment(exp: Experiment, console: Console) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``exp`` and return the records of all finished cells, in matrix order.

    A cell that fails (every trial diverged) is reported and skipped; the rest of the matrix still runs.
    """
    cells = expand(exp)
    loaded = {name: data.DATASETS.get(name).load() for name in dict.fromkeys(c.dataset for c in cells)}
    cells = expand(exp)  # datasets downloaded just now change their cells' keys
    environment.set_threads(exp.training.threads)
    env = environment.describe(str(pick_device(exp.training.device)))
    tracker = Tracker(tracking_uri(exp.tracking_uri), exp.name)
    records, failures, finished = [], [], {}
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("cells", total=len(cells))
        current = progress.add_task("", total=None)
        for cell in cells:
            record = results.load_cell(exp.name, cell)
            if record is not None:
                console.print(f"[dim]finished earlier: {cell.run_name}[/dim]")
            else:
                scratch = finished.get((cell.dataset, cell.backbone.label, str(cell.budget), "scratch"))
                say = _status_line(progress, current, cell)
                try:
                    record = run_cell(CellTrainer(cell, exp, loaded[cell.dataset], say), tracker, scratch, env)
                except TuningFailedError as err:
                    failures.append(cell)
                    console.print(f"[red]failed[/red] {err}")
                    progress.advance(overall)
                    continue
                results.save_cell(exp.name, cell, record)
                console.print(_done_line(cell, record))
            records.append(record)
            finished[(cell.dataset, cell.backbone.label, str(cell.budget), cell.strategy)] = record
            progress.advance(overall)
        progress.remove_task(current)
    if failures:
        console.print(f"[red]{len(failures)} cell(s) failed[/red]; finished cells are kept, a rerun retries the rest")
    return records


def _status_line(progress: Progress, task: Any, cell: Cell) -> Any:
    """A callback showing where ``cell`` is (trial, epoch, features) on the progress display."""
    return lambda msg: progress.update(task, description=f"{cell.run_name}  {msg}")


def _done_line(cell: Cell, record: dict[str, Any]) -> str:
    return (
        f"[green]done[/green] {cell.run_name}: test acc {100 * record['test_acc_mean']:.1f} "
        f"± {100 * record['test_acc_std']:.1f} % over {len(record['seeds'])} seeds "
        f"({record['trials_complete']} trials completed, {record['trials_pruned']} pruned, {record['seconds']:.0f} s)"
    )
