"""The training loop: it learns, it stops on divergence, and tuning survives a diverging trial."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_experiment

from bench import config, data
from bench.matrix import expand
from bench.tracking import Tracker, tracking_uri
from bench.train import Batches, DivergedError, Schedule, fit, schedule
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
    plan = schedule(64, 16, epochs=20)
    history = fit(model, [{"params": model.parameters()}], _toy(), _toy(seed=1), plan, lr=0.1, weight_decay=0.0, seed=0)
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
            Schedule(8, 2),
            lr=1e-3,
            weight_decay=0.0,
            seed=0,
            extra_loss=lambda step: torch.tensor(float("nan")),
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


def test_schedule_in_steps_and_with_a_minimum():
    assert schedule(100, 25, epochs=2).steps == 8  # 4 batches an epoch
    assert schedule(100, 25, epochs=2, min_steps=30).steps == 30  # small budgets are raised to the minimum
    assert schedule(1000, 25, epochs=2, min_steps=30).steps == 80  # large ones keep their epochs
    assert schedule(100, 25, epochs=99, steps=7).steps == 7  # steps override epochs
    plan = schedule(100, 25, epochs=1, steps=30, evaluations=4)
    assert plan.eval_steps() == [8, 15, 22, 30]  # evenly spaced, the last step included
    assert schedule(100, 25, epochs=2, evaluations=10).eval_steps() == [4, 8]  # at most one per epoch


@pytest.mark.parametrize("steps", [1, 7, 30])
def test_fit_takes_exactly_the_planned_optimiser_steps(steps, monkeypatch):
    counted = []
    real_step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: counted.append(1) or real_step(self, *a, **k))
    model = torch.nn.Linear(4, 2)
    plan = Schedule(steps, evaluations=3)
    history = fit(model, [{"params": model.parameters()}], _toy(), _toy(seed=1), plan, lr=0.1, weight_decay=0, seed=0)
    assert len(counted) == steps and history[-1].step == steps and len(history) == min(3, steps)


def test_a_step_budget_reaches_the_run_and_its_records():
    exp = config.parse(tiny_experiment(strategies=["finetune"], training={"steps": 5, "batch_size": 16}))
    result = CellTrainer(expand(exp)[0], exp, data.DATASETS.get("cifar10").load()).run(
        {"lr": 1e-3, "weight_decay": 0.0}, seed=0
    )
    assert result.steps == 5 and result.history[-1].step == 5


def test_steps_and_epochs_together_are_a_config_error():
    with pytest.raises(config.ConfigError, match="either 'steps' or 'epochs'"):
        config.parse(tiny_experiment(training={"steps": 5, "epochs": 2}))


@pytest.mark.parametrize("strategy", ["finetune", "lp_ft", "feature_extraction"])
def test_runs_from_the_in_memory_weights_equal_runs_that_read_them_from_disk(strategy):
    exp = config.parse(tiny_experiment(strategies=[strategy], training={"steps": 3, "batch_size": 16}))
    dataset = data.DATASETS.get("cifar10").load()
    hp = {"lr": 1e-3, "weight_decay": 1e-4, "C": 0.1, "probe_C": 0.1}
    runs = []
    for reuse in (False, True, True):  # from disk, then twice from the in-memory copy
        trainer = CellTrainer(expand(exp)[0], exp, dataset)
        trainer.reuse_weights = reuse
        runs.append(trainer.run(hp, seed=1, test=True))
    disk = runs[0].model.state_dict()
    for run in runs[1:]:
        assert run.history == runs[0].history and (run.test_pred == runs[0].test_pred).all()
        assert all(torch.equal(disk[k], v) for k, v in run.model.state_dict().items())
