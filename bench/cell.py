"""One cell, the unit of work: its Optuna study, then its final seeds, as one function that returns the cell's record.

The same function runs in the ``bench run`` process, in a local worker or as a Ray task (``bench/execution/``); the
runner above them decides which cells run and where.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import faults, results
from bench.analysis.plots import confusion_matrix_png
from bench.matrix import Cell
from bench.metrics import classification_metrics
from bench.tracking import Tracker
from bench.training_run import CellTrainer
from bench.tuning import tune


def final_seed(trainer: CellTrainer, tracker: Tracker, hp: dict[str, Any], seed: int) -> dict[str, Any]:
    """Retrain the best hyperparameters at ``seed``, test, log the curve and test metrics in one batch, and save
    the seed's record before its run ends (so a FINISHED final run always has its record)."""
    cell = trainer.cell
    name, tags = f"{cell.run_name}/seed{seed}", {**cell.tags, "seed": str(seed)}
    with tracker.child_run(name, "final", hp, tags, reuse=True):  # a seed interrupted earlier keeps its run
        faults.point("cell.final_seed")
        run = trainer.run(hp, seed, test=True)
        metrics = classification_metrics(run.test_pred, run.test_true, trainer.dataset.classes)
        tracker.log_run(run.history, {**_scalars(metrics), **run.cost()})
        tracker.mlflow.log_dict(metrics, "test_metrics.json")
        split = trainer.split(seed)
        record = {
            "seed": seed,
            "val_acc": run.val_acc,
            "steps": run.steps,
            "best_step": run.best_step,
            "seconds": round(run.seconds, 2),
            "train_counts": split.train_counts,
            "n_train": len(split.train),
            "n_val": len(split.val),
            "n_test": len(split.test),
            **run.diagnostics,
            **metrics,
            # per test example, so any comparison can be recomputed from what is stored
            "predictions": {
                "test_index": run.test_index.tolist(),
                "predicted": run.test_pred.tolist(),
                "true": run.test_true.tolist(),
            },
        }
        results.save_seed(trainer.exp.name, cell, seed, record)
    return record


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {"test_acc": metrics["test_acc"], "test_macro_f1": metrics["test_macro_f1"]}


def run_cell(trainer: CellTrainer, tracker: Tracker, storage: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Tune one cell (its study in the Optuna storage at ``storage``), retrain its best hyperparameters at every
    final seed, and return its record.

    Call it only while holding the cell's claim: runs and trials a dead process left open are then ended first,
    and every seed already saved is kept. ``env`` (versions, CPU, threads) is tagged and recorded.
    """
    cell, exp = trainer.cell, trainer.exp
    start = time.perf_counter()
    saved = results.saved_seeds(exp.name, cell, cell.seeds)
    tracker.end_orphans(cell, set(saved))

    settings = {
        **exp.training_for(cell.dataset).model_dump(exclude={"device", "threads"}),
        "n_trials": exp.tuning.n_trials,
        "seeds": exp.seeds.min,
        "max_seeds": exp.seeds.most,
        **{f"splits.{k}": v for k, v in exp.splits.model_dump().items()},
    }
    with tracker.cell_run(cell, settings, env):
        hp, study = tune(trainer, tracker, storage, trainer.say)
        finals = []
        for seed in range(cell.seeds):
            if seed not in saved:
                trainer.say(f"final seed {seed + 1}/{cell.seeds}")
            finals.append(saved.get(seed) or final_seed(trainer, tracker, hp, seed))
        accs = [r["test_acc"] for r in finals]
        mean, std = statistics.fmean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0)
        f1 = statistics.fmean(r["test_macro_f1"] for r in finals)
        spent = {  # the cell's compute: its final runs' median steps, and its seconds with the tuning
            "steps_median": statistics.median(r.get("steps", 0) for r in finals),
            "cell_seconds": round(time.perf_counter() - start, 1),
        }
        tracker.log_metrics({"test_acc_mean": mean, "test_acc_std": std, "test_macro_f1_mean": f1, **spent})
        _log_confusion(tracker, cell, finals, trainer.dataset.classes, mean)
        _log_predictions(tracker, finals)
    states = [t.state.name for t in study.get_trials(deepcopy=False)] if study is not None else []
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


def _log_predictions(tracker: Tracker, finals: list[dict]) -> None:
    """Every final seed's per-example test predictions as one CSV artifact of the cell (seed, test_index,
    predicted, true): what a paired comparison of two cells resamples."""
    rows = ["seed,test_index,predicted,true"]
    for r in finals:
        p = r["predictions"]
        rows += [f"{r['seed']},{i},{y},{t}" for i, y, t in zip(p["test_index"], p["predicted"], p["true"], strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.csv"
        path.write_text("\n".join(rows) + "\n")
        tracker.log_artifact(path)


def done_line(cell: Cell, record: dict[str, Any]) -> str:
    return (
        f"{cell.run_name}: test acc {100 * record['test_acc_mean']:.1f} "
        f"± {100 * record['test_acc_std']:.1f} % over {len(record['seeds'])} seeds "
        f"({record['trials_complete']} trials completed, {record['trials_pruned']} pruned, {record['seconds']:.0f} s)"
    )
