"""Optuna: one persistent study per cell, TPE sampling, pruning on per-epoch validation accuracy."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from bench import faults, stores
from bench.config import Experiment
from bench.loop import DivergedError, EvalStats
from bench.matrix import Cell
from bench.strategies import Hyperparameters
from bench.tracking import Tracker
from bench.training_run import CellTrainer

TUNING_SEED = 0  # the split and init every trial uses; final seeds are 0..N-1 and see the test split
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


class TuningFailedError(RuntimeError):
    """No trial of a cell completed (every one diverged or was pruned)."""


@functools.cache
def _storage(url: str) -> optuna.storages.RDBStorage:
    """One connection pool per storage URL and process (opening one checks the schema: not free)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": stores.connect_args(url)})


class CellHyperband(optuna.pruners.HyperbandPruner):
    """Hyperband whose brackets follow the cell, not its study's name. Optuna puts trial n in a bracket by a hash of
    the study's name and n, and a study's name carries the cell key, which changes with any edit of the strategy's
    source: a comment changed which trials were pruned, and so some cells' results (15 of 108 in the default). Here
    the hash reads ``identity`` (experiment, cell coordinates, sampler seed), so the same cell tunes the same way
    in every version whose training is the same, and another sampler seed draws other brackets too."""

    def __init__(self, identity: str, **options) -> None:
        super().__init__(**options)
        self.identity = identity

    def _get_bracket_id(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        return super()._get_bracket_id(_Named(self.identity), trial)  # optuna reads only the study's name there


@dataclass(frozen=True)
class _Named:
    study_name: str


def open_study(cell: Cell, exp: Experiment, url: str) -> optuna.Study:
    """The cell's study in the Optuna storage at ``url``. Only the holder of the cell's claim opens it, so a trial
    still RUNNING belongs to a process that died: it is failed at once, and the trial it was is drawn again."""
    storage = _storage(url)
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        # the resource is a trial's validations: at most training.evaluations are reported
        "hyperband": lambda: CellHyperband(
            f"{exp.name}/{cell.run_name}/sampler-{exp.tuning.sampler_seed}",
            min_resource=1,
            max_resource=exp.training_for(cell.dataset).evaluations,
            reduction_factor=3,
        ),
        "none": optuna.pruners.NopPruner,
    }
    pruner = pruners[exp.tuning.pruner]()
    study = optuna.create_study(
        study_name=f"{exp.name}/{cell.run_name}/{cell.key}",
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        pruner=pruner,
    )
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return study


def sampler(exp: Experiment, done: int) -> optuna.samplers.TPESampler:
    """The sampler that draws a cell's trial number ``done`` (counting completed and pruned ones only).

    Seeded by that number, it draws the same point over the same history however many times the run was
    interrupted before, so a resumed cell tunes exactly as an uninterrupted one.
    """
    seed = int(np.random.SeedSequence([exp.tuning.sampler_seed, done]).generate_state(1)[0])
    return optuna.samplers.TPESampler(n_startup_trials=max(1, exp.tuning.n_trials // 2), seed=seed)


def defaults(trainer: CellTrainer) -> Hyperparameters:
    """The strategy's documented starting point as the full hyperparameters its search space returns, as trial 0
    of a study would get them: a suggestion without a default is drawn by the experiment's seeded sampler."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line for a study never stored
    study = optuna.create_study(sampler=sampler(trainer.exp, 0))  # in memory: nothing is stored
    study.enqueue_trial(trainer.strategy.defaults)
    return trainer.strategy().search_space(study.ask())


def tune(
    trainer: CellTrainer,
    tracker: Tracker,
    storage: str,
    progress: Callable[[str], None] = lambda msg: None,
) -> tuple[Hyperparameters, optuna.Study | None]:
    """Run the trials this cell still owes and return the best trial's hyperparameters.

    A cell without validation examples (a budget too small for a hold-out, or a probe that cross-validates inside
    its training examples) has nothing to choose trials on: it runs no study and takes the strategy's defaults
    (``study`` None).

    The study lives in the Optuna storage at ``storage``. Completed and pruned trials count towards ``n_trials`` (a
    diverged trial is pruned); trials of a process that died are marked failed and redone, so every strategy gets
    the same budget. The pruner sees one report per validation; metrics reach MLflow in one batch when the trial
    ends.
    """
    cell, exp = trainer.cell, trainer.exp
    if not trainer.validates():  # nothing to choose on: the documented starting point, no study
        return defaults(trainer), None
    study = open_study(cell, exp, storage)
    n_trials = exp.tuning.n_trials

    def objective(trial: optuna.Trial) -> float:
        hp = trainer.strategy().search_space(trial)
        trial.set_user_attr("hp", hp)
        name = f"{cell.run_name}/trial{trial.number}"
        outcome: Exception | None = None
        history: list[EvalStats] = []
        with tracker.child_run(name, "trial", hp, {**cell.tags, "trial": str(trial.number)}):
            faults.point("cell.trial")

            def on_eval(stats: EvalStats) -> None:
                history.append(stats)
                progress(f"trial {trial.number + 1}/{n_trials} step {stats.step} val {stats.val_acc:.3f}")
                trial.report(stats.val_acc, len(history))
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {stats.step} steps")

            try:
                result = trainer.run(hp, TUNING_SEED, on_eval=on_eval)
                tracker.log_run(result.history, {"best_val_acc": result.val_acc, **result.cost()})
            except DivergedError as err:
                trial.set_user_attr("diverged", str(err))
                tracker.log_run(history, {}, {"outcome": "diverged"})
                outcome = optuna.TrialPruned(str(err))
            except optuna.TrialPruned as err:
                tracker.log_run(history, {}, {"outcome": "pruned"})
                outcome = err
        if outcome is not None:
            raise outcome
        return result.val_acc

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if exp.tuning.first_trial == "defaults" and not study.get_trials(deepcopy=False, states=COUNTED) and not waiting:
        study.enqueue_trial(trainer.strategy.defaults)  # trial 0: the strategy's documented starting point
    while (done := len(study.get_trials(deepcopy=False, states=COUNTED))) < n_trials:
        study.sampler = sampler(exp, done)
        study.optimize(objective, n_trials=1)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise TuningFailedError(
            f"{cell.run_name}: none of {n_trials} trials completed (diverged or pruned); "
            "widen the search space or raise tuning.n_trials"
        )
    return study.best_trial.user_attrs["hp"], study
