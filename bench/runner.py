"""The matrix runner: expand the experiment, skip finished cells, tune and retrain the rest, collect results."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from bench import data, execution, results, stats, stores
from bench.config import Experiment
from bench.matrix import Cell, expand
from bench.metrics import classification_metrics
from bench.plots import confusion_matrix_png
from bench.tracking import Tracker, tracking_uri
from bench.trainer import CellTrainer, RunResult
from bench.tuning import storage_url, tune


def final_seed(trainer: CellTrainer, tracker: Tracker, hp: dict[str, Any], seed: int) -> dict[str, Any]:
    """Retrain the best hyperparameters at ``seed``, test, log the curve and test metrics in one batch, and save
    the seed's record before its run ends (so a FINISHED final run always has its record)."""
    cell = trainer.cell
    name, tags = f"{cell.run_name}/seed{seed}", {**cell.tags, "seed": str(seed)}
    with tracker.child_run(name, "final", hp, tags, reuse=True):  # a seed interrupted earlier keeps its run
        run = trainer.run(hp, seed, test=True)
        metrics = classification_metrics(run.test_pred, run.test_true, trainer.dataset.classes)
        tracker.log_run(run.history, {**_scalars(metrics), **_run_metrics(run)})
        tracker.mlflow.log_dict(metrics, "test_metrics.json")
        record = {
            "seed": seed,
            "val_acc": run.val_acc,
            "steps": run.steps,
            "train_counts": trainer.split(seed).train_counts,
            **metrics,
        }
        results.save_seed(trainer.exp.name, cell, seed, record)
    return record


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {"test_acc": metrics["test_acc"], "test_macro_f1": metrics["test_macro_f1"]}


def _run_metrics(run: RunResult) -> dict[str, float]:
    """Optimiser steps, and how the linear probe converged when the run had one."""
    if run.probe is None:
        return {"steps": run.steps}
    return {"steps": run.steps, "probe_iterations": run.probe.iterations, "probe_converged": run.probe.converged}


def run_cell(trainer: CellTrainer, tracker: Tracker, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Tune one cell, retrain its best hyperparameters at every final seed, and return its record.

    Call it only while holding the cell's claim: runs and trials a dead process left open are then ended first,
    and every seed already saved is kept. ``env`` (versions, CPU, threads) is tagged and recorded.
    """
    cell, exp = trainer.cell, trainer.exp
    start = time.perf_counter()
    saved = {s: r for s in range(exp.seeds) if (r := results.load_seed(exp.name, cell, s)) is not None}
    tracker.end_orphans(cell, set(saved))

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
            if seed not in saved:
                trainer.say(f"final seed {seed + 1}/{exp.seeds}")
            finals.append(saved.get(seed) or final_seed(trainer, tracker, hp, seed))
        accs = [r["test_acc"] for r in finals]
        mean, std = statistics.fmean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0)
        f1 = statistics.fmean(r["test_macro_f1"] for r in finals)
        tracker.log_metrics({"test_acc_mean": mean, "test_acc_std": std, "test_macro_f1_mean": f1})
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


def run_experiment(
    exp: Experiment, console: Console, workers: int | None = None, ray: str | None = None
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``exp`` on ``workers`` local workers (default: as many as the cores hold), or
    on the Ray cluster at ``ray`` (``local``: one started here), and return the records of all finished cells, in
    matrix order.

    The stores are created first, once, by this process. Any number of ``bench run`` processes may share a results
    folder: each cell is claimed before it is trained. A cell that fails (every trial diverged) is reported and
    skipped; the rest of the matrix still runs.
    """
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(execution.ray_cluster(exp, ray)) if ray else None
        return _run_cells(exp, console, workers, cluster)


def _longest_first(cells: list[Cell]) -> list[Cell]:
    """Cells of larger budgets (``all`` the largest) first, in matrix order otherwise: they train longest, so
    workers that take them first do not end the matrix with one of them training a long cell while the others
    wait. Each cell's result is the same whoever trains it, and whenever."""
    return sorted(cells, key=lambda c: stats.budget_order(c.budget), reverse=True)  # sorted stays stable


def _run_cells(
    exp: Experiment, console: Console, workers: int | None, cluster: dict[str, float] | None
) -> list[dict[str, Any]]:
    for line in stores.prepare(tracking_uri(exp.tracking_uri), storage_url(exp.optuna_storage)):
        console.print(Text(line, style="yellow"))
    cells = expand(exp)
    loaded = {name: data.DATASETS.get(name).load() for name in dict.fromkeys(c.dataset for c in cells)}
    cells = expand(exp)  # datasets downloaded just now change their cells' keys
    Tracker(tracking_uri(exp.tracking_uri), exp.name)  # the experiment exists before any worker starts
    todo = _longest_first([c for c in cells if not results.is_finished(exp.name, c)])
    for cell in cells:
        if cell not in todo:
            console.print(Text(f"finished earlier: {cell.run_name}", style="dim"))
    threads = f"{exp.training.threads} torch thread{'s' if exp.training.threads > 1 else ''} each"
    if cluster is not None:
        n = execution.ray_slots(exp, cluster, len(todo))
        where = f"the Ray cluster ({cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs), {threads}"
    else:
        n = execution.workers_for(exp, workers, len(todo))
        where = f"{n} worker(s), {threads}"
    if todo:
        console.print(Text(f"{len(todo)} cell(s) to train on {where}"))
    failures = execution.execute(exp, todo, len(cells), n, console, loaded, cluster) if todo else 0
    records = [r for r in (results.load_cell(exp.name, c) for c in cells) if r is not None]
    if failures:
        console.print(
            Text(f"{failures} cell(s) failed (see above); the finished cells are kept and reported", style="red")
        )
    return records


def done_line(cell: Cell, record: dict[str, Any]) -> str:
    return (
        f"{cell.run_name}: test acc {100 * record['test_acc_mean']:.1f} "
        f"± {100 * record['test_acc_std']:.1f} % over {len(record['seeds'])} seeds "
        f"({record['trials_complete']} trials completed, {record['trials_pruned']} pruned, {record['seconds']:.0f} s)"
    )
