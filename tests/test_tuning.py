"""Trials are replayable: a cell interrupted mid-trial draws the same points as one that never was."""

from __future__ import annotations

import optuna
from conftest import tiny_experiment
from optuna.trial import TrialState

from bench.config import Experiment
from bench.tuning import COUNTED, sampler


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
