"""Trials are replayable: a cell interrupted mid-trial draws the same points as one that never was."""

from __future__ import annotations

import optuna
from conftest import tiny_experiment
from optuna.trial import TrialState

from bench import config
from bench.config import Experiment
from bench.matrix import expand
from bench.strategies import STRATEGIES, Strategy
from bench.tuning import COUNTED, sampler, tune


def _tune(exp: Experiment, interrupt_at: int | None) -> list[dict]:
    study = optuna.create_study(direction="maximize")
    objective = lambda t: -((t.suggest_float("lr", 1e-5, 1e-1, log=True) - 1e-3) ** 2) + t.suggest_int("k", 0, 3)  # noqa: E731
    while (done := len(study.get_trials(states=COUNTED))) < exp.tuning.n_trials:
        study.sampler = sampler(exp, done)
        if done == interrupt_at:
            trial = study.ask()  # the process dies during this trial: the next run fails it and draws again
            objective(trial)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            interrupt_at = None
            continue
        study.optimize(objective, n_trials=1)
    return [t.params for t in study.get_trials(states=COUNTED)]


def test_an_interrupted_trial_is_redrawn_as_it_was_and_the_rest_follow_unchanged():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exp = Experiment.model_validate({**tiny_experiment(), "tuning": {"n_trials": 6}})
    uninterrupted = _tune(exp, None)
    for moment in (0, 2, 4):  # a random start-up trial, the first TPE trial, a later one
        assert _tune(exp, moment) == uninterrupted
    assert len({tuple(p.values()) for p in uninterrupted}) == 6


class _WithoutADefault(Strategy):
    name = "test_without_a_default"
    description = "a plugin's strategy whose default leaves one suggestion out"
    defaults = {"lr": 1e-3}

    def search_space(self, trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        }


def test_a_cell_without_a_hold_out_runs_no_study_and_takes_the_strategys_defaults(results_root, monkeypatch):
    from bench import data, stores
    from bench.tracking import Tracker
    from bench.training_run import CellTrainer

    monkeypatch.setitem(STRATEGIES._entries, _WithoutADefault.name, _WithoutADefault)
    exp = config.parse(
        tiny_experiment(budgets=[5], strategies=["l2sp", _WithoutADefault.name], splits={"test_per_class": 5})
    )  # 20 % of 5 per class is 1: too few to hold out
    ds = data.DATASETS.get("cifar10").load()
    where = stores.resolve(exp)
    for cell in expand(exp):
        trainer = CellTrainer(cell, exp, ds)
        assert not trainer.validates()
        hp, study = tune(trainer, Tracker(where.tracking, exp.name), where.optuna)
        assert study is None and hp["lr"] == trainer.strategy.defaults["lr"]
        assert set(hp) >= {"lr", "weight_decay"}  # the full hyperparameters: fixed values and defaults
    assert tune(CellTrainer(expand(exp)[1], exp, ds), Tracker(where.tracking, exp.name), where.optuna)[0] == hp
