"""The training loop: it learns, it stops on divergence, and tuning survives a diverging trial."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_experiment

from bench import config, data
from bench.matrix import expand
from bench.tracking import Tracker, tracking_uri
from bench.train import Batches, DivergedError, fit
from bench.trainer import CellTrainer
from bench.tuning import tune


def _toy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32)
    y = (x[:, 0] > 0).long().numpy()
    return Batches(x, y, np.arange(n), 16, lambda b: b, torch.device("cpu"))


def test_fit_learns_a_separable_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    history = fit(
        model, [{"params": model.parameters()}], _toy(), _toy(seed=1), epochs=20, lr=0.1, weight_decay=0.0, seed=0
    )
    assert history[0].val_acc < 0.95 <= history[-1].val_acc
    assert history[-1].train_loss < history[0].train_loss


def test_fit_raises_on_a_nan_loss():
    model = torch.nn.Linear(4, 2)
    with pytest.raises(DivergedError, match="learning rate"):
        fit(
            model,
            [{"params": model.parameters()}],
            _toy(),
            _toy(),
            epochs=2,
            lr=1e-3,
            weight_decay=0.0,
            seed=0,
            extra_loss=lambda: torch.tensor(float("nan")),
        )


def test_no_final_batch_of_one_example():
    batches = Batches(torch.zeros(33, 1), np.zeros(33, dtype=int), np.arange(33), 32, lambda b: b, torch.device("cpu"))
    sizes = [len(y) for _, y in batches(shuffle_seed=0)]
    assert sum(sizes) == 33 and min(sizes) > 1


def test_a_diverging_trial_is_pruned_and_tuning_goes_on(monkeypatch):
    exp = config.parse(tiny_experiment(strategies=["feature_extraction"], tuning={"n_trials": 3}))
    cell = expand(exp)[0]
    trainer = CellTrainer(cell, exp, data.DATASETS.get("cifar10").load())
    real_run, calls = trainer.run, []

    def first_diverges(hp, seed, **kw):
        calls.append(hp)
        if len(calls) == 1:
            raise DivergedError("loss is nan at epoch 1")
        return real_run(hp, seed, **kw)

    monkeypatch.setattr(trainer, "run", first_diverges)
    tracker = Tracker(tracking_uri(None), exp.name)
    with tracker.cell_run(cell, {}):
        hp, study = tune(trainer, tracker)
    states = [t.state.name for t in study.trials]
    assert states.count("PRUNED") == 1 and states.count("COMPLETE") == 2
    assert "diverged" in study.trials[0].user_attrs and hp in calls[1:]
