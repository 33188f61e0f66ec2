"""The training loop: it learns, it stops on divergence, and tuning survives a diverging trial."""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
import optuna
import pytest
import torch
from conftest import tiny_experiment

from bench import config, data, stores
from bench.loop import (
    Batches,
    DivergedError,
    EvalStats,
    Schedule,
    accuracy,
    best,
    evaluate,
    fit,
    learning_rates,
    schedule,
)
from bench.matrix import expand, training_key
from bench.strategies import STRATEGIES, get_strategy
from bench.strategies.bitfit import BitFit
from bench.tracking import Tracker
from bench.training_run import CellTrainer, min_delta
from bench.tuning import open_study, tune


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
    exp = config.parse(tiny_experiment(strategies=["finetune"], tuning={"n_trials": 3}))
    cell = expand(exp)[0]
    trainer = CellTrainer(cell, exp, data.DATASETS.get("cifar10").load())
    real_run, calls = trainer.run, []

    def first_diverges(hp, seed, **kw):
        calls.append(hp)
        if len(calls) == 1:
            raise DivergedError("loss is nan at epoch 1")
        return real_run(hp, seed, **kw)

    monkeypatch.setattr(trainer, "run", first_diverges)
    where = stores.resolve(exp)
    tracker = Tracker(where.tracking, exp.name)
    with tracker.cell_run(cell, {}):
        hp, study = tune(trainer, tracker, where.optuna)
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
    assert schedule(100, 25, epochs=2, evaluations=10).eval_steps() == list(range(1, 9))  # at most one per step
    assert schedule(1000, 25, epochs=9, min_steps=30, max_steps=50).steps == 50  # large budgets are capped
    assert schedule(100, 25, epochs=9, min_steps=30, max_steps=50).steps == 36  # the cap is no minimum
    assert schedule(100, 25, epochs=2, min_steps=30, max_steps=50, scale=3).steps == 90  # e.g. scratch


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
    hp = {"lr": 1e-3, "weight_decay": 1e-4, "C": 0.1}
    runs = []
    for reuse in (False, True, True):  # from disk, then twice from the in-memory copy
        trainer = CellTrainer(expand(exp)[0], exp, dataset)
        trainer.reuse_weights = reuse
        runs.append(trainer.run(hp, seed=1, test=True))
    disk = runs[0].model.state_dict()
    for run in runs[1:]:
        assert run.history == runs[0].history and (run.test_pred == runs[0].test_pred).all()
        assert all(torch.equal(disk[k], v) for k, v in run.model.state_dict().items())


@pytest.mark.parametrize("strategy", ["finetune", "lp_ft"])
def test_the_final_seed_0_tests_the_best_trials_weights_instead_of_training_them_again(strategy, monkeypatch):
    exp = config.parse(tiny_experiment(strategies=[strategy], training={"steps": 4, "batch_size": 16}))
    dataset = data.DATASETS.get("cifar10").load()
    good, bad = {"lr": 1e-3, "weight_decay": 1e-4}, {"lr": 1e-7, "weight_decay": 1e-4}
    trainer, trained = CellTrainer(expand(exp)[0], exp, dataset), []
    real = trainer._train
    monkeypatch.setattr(trainer, "_train", lambda *a: trained.append(a[:2]) or real(*a))
    trials = [trainer.run(hp, seed=0) for hp in (good, bad)]  # trials train at seed 0
    kept = max(trials, key=lambda r: r.val_acc)  # the first of equal ones, as Optuna's best trial
    hp = good if kept is trials[0] else bad
    final = trainer.run(dict(hp), seed=0, test=True)
    assert len(trained) == 2 and final is kept  # tested, not trained again
    again = CellTrainer(expand(exp)[0], exp, dataset).run(dict(hp), seed=0, test=True)  # a process that trains it
    assert final.history == again.history and (final.test_pred == again.test_pred).all()
    trainer.run(dict(hp), seed=1, test=True)
    trainer.run(dict(hp), seed=0, test=True)  # tested once already: trained this time
    assert trained[2:] == [(hp, 1), (hp, 0)]


# Early stopping, the best validated weights, warm-up


def _anti(n=64, seed=0):
    """Examples labelled the other way round from ``_toy``: learning ``_toy`` only makes these worse."""
    batches = _toy(n, seed)
    return Batches(batches.items, 1 - batches.labels, batches.indices, 16, lambda b: b, torch.device("cpu"))


def test_a_run_that_never_beats_its_starting_weights_trains_its_whole_plan_and_ends_holding_them():
    """Patience counts only once a run has beaten its start: one still at its starting accuracy (random weights on a
    plateau, LP-FT's probe not yet improved on) has not stalled, it has not begun."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    plan = Schedule(100, evaluations=25, patience=3)  # a validation every 4 steps
    history = fit(model, [{"params": model.parameters()}], _toy(), _anti(), plan, lr=0.1, weight_decay=0.0, seed=0)
    assert history[0].step == 0 and best(history) is history[0]
    assert [s.step for s in history] == list(range(0, 101, 4))  # training only hurts, yet it never stopped early
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def _anti_aligned():
    """A linear model that gets every example of ``_toy`` wrong: its first steps can only improve it."""
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[0, 0], model.weight[1, 0] = 2.0, -2.0
    return model


def test_early_stopping_stops_once_patience_validations_have_not_beaten_the_best():
    model = _anti_aligned()
    plan = Schedule(100, evaluations=25, patience=2)
    history = fit(model, [{"params": model.parameters()}], _toy(), _toy(seed=1), plan, lr=3.0, weight_decay=0.0, seed=0)
    kept = best(history)
    assert history[0].val_acc == 0.0 and kept.step == 16  # it learned, then stalled
    assert [s.step for s in history] == [0, 4, 8, 12, 16, 20, 24]  # 2 validations without a better one: stop


def test_validations_during_the_warm_up_do_not_count_towards_patience():
    model = _anti_aligned()
    plan = Schedule(100, evaluations=25, patience=2, warmup=20)  # validations at 4 to 20 fall in the warm-up
    history = fit(model, [{"params": model.parameters()}], _toy(), _toy(seed=1), plan, lr=3.0, weight_decay=0.0, seed=0)
    assert best(history).step == 12
    # 16 and 20 are no better, but the rate is still rising: counted, they would have stopped the run at 20
    assert [s.step for s in history] == [0, 4, 8, 12, 16, 20, 24, 28]


def test_a_run_with_patience_ends_holding_the_weights_of_its_best_validation():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    val = _toy(seed=1)
    plan = Schedule(60, evaluations=30, patience=100)  # never stops early: the best may lie anywhere
    history = fit(model, [{"params": model.parameters()}], _toy(), val, plan, lr=0.5, weight_decay=0.0, seed=0)
    kept = best(history)
    assert history[-1].step == 60 and accuracy(model, val) == kept.val_acc
    assert kept.val_acc == max(s.val_acc for s in history)
    assert all(s.val_acc < kept.val_acc for s in history if s.step < kept.step)  # the earliest of equal ones


def test_warm_up_then_cosine():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    lrs = learning_rates(optimizer, Schedule(10, evaluations=1, warmup=4))
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        lrs.step()
    assert seen[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # linear warm-up, then the full rate
    cosine = [0.5 * (1 + math.cos(math.pi * i / 6)) for i in range(6)]
    assert seen[4:] == pytest.approx(cosine) and seen[-1] > 0  # cosine towards zero at step 10
    plain = torch.optim.SGD([weight], lr=1.0)
    assert isinstance(learning_rates(plain, Schedule(10, 1)), torch.optim.lr_scheduler.CosineAnnealingLR)


def test_lp_ft_with_early_stopping_never_ends_below_its_probe():
    """A fine-tune that only destroys (AdamW at a rate of 0.05) ends holding the probed model, not the wreck."""
    exp = config.parse(
        tiny_experiment(strategies=["lp_ft"], training={"steps": 12, "evaluations": 4, "patience": 2, "batch_size": 8})
    )
    trainer = CellTrainer(expand(exp)[0], exp, data.DATASETS.get("cifar10").load())
    run = trainer.run({"lr": 0.05, "weight_decay": 0.0}, seed=0)
    probe_val = run.history[0].val_acc  # step 0: the probed head on the pretrained backbone
    assert run.history[0].step == 0 and run.val_acc >= probe_val
    split = trainer.split(0)
    val = trainer._input_batches(run.model, split)["val"]
    assert accuracy(run.model, val) == run.val_acc and run.best_step == best(run.history).step
    assert run.steps == run.history[-1].step <= 12 and run.seconds > 0


def test_options_left_off_keep_the_cell_keys_of_existing_results():
    off = config.parse(tiny_experiment())
    assert {"patience", "warmup_steps"}.isdisjoint(training_key(off))
    on = config.parse(tiny_experiment(training={"epochs": 2, "batch_size": 16, "patience": 3}))
    assert training_key(on)["patience"] == 3 and expand(on)[0].key != expand(off)[0].key


def test_hyperband_stops_trials_whose_validations_trail_at_its_rungs(results_root):
    results_root.mkdir(parents=True)  # where the study's sqlite storage goes
    exp = config.parse(tiny_experiment(tuning={"n_trials": 12, "pruner": "hyperband"}, training={"evaluations": 9}))
    study = open_study(expand(exp)[0], exp, stores.resolve(exp).optuna)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    stopped_at = {}
    for number in range(12):
        trial = study.ask()
        level = 0.9 if number % 3 == 0 else 0.1  # a third of the trials are good
        for validation in range(1, 10):
            trial.report(level, validation)
            if trial.should_prune():
                stopped_at[number] = validation
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, level)
    assert stopped_at and all(number % 3 != 0 for number in stopped_at)  # only poor trials, before their end
    assert min(stopped_at.values()) < 9  # some stopped before their last validation: compute saved


def test_hyperband_brackets_follow_the_cell_not_the_code_digest_in_its_key(results_root):
    results_root.mkdir(parents=True)
    exp = config.parse(tiny_experiment(tuning={"n_trials": 12, "pruner": "hyperband"}, training={"evaluations": 9}))
    cell = expand(exp)[0]
    edited = dataclasses.replace(cell, key="0" * 16)  # the same cell after an edit of its strategy's source
    resampled = exp.model_copy(update={"tuning": exp.tuning.model_copy(update={"sampler_seed": 1})})

    def brackets(cell, exp) -> list[int]:
        study = open_study(cell, exp, stores.resolve(exp).optuna)
        study.pruner._try_initialization(study)
        return [study.pruner._get_bracket_id(study, types.SimpleNamespace(number=n)) for n in range(12)]

    first = brackets(cell, exp)
    assert brackets(edited, exp) == first and len(set(first)) > 1  # the same brackets, and more than one
    assert brackets(cell, resampled) != first  # another sampler seed draws other brackets


@pytest.mark.parametrize("batchnorm", ["train", "frozen"])
def test_frozen_batchnorm_keeps_its_statistics_and_trains_its_scale(batchnorm):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    norm = model[1]
    stats, scale = (norm.running_mean.clone(), norm.running_var.clone()), norm.weight.detach().clone()
    plan = Schedule(8, evaluations=2, batchnorm=batchnorm)
    fit(model, [{"params": model.parameters()}], _toy(), _toy(seed=1), plan, lr=0.05, weight_decay=0.0, seed=0)
    unchanged = torch.equal(norm.running_mean, stats[0]) and torch.equal(norm.running_var, stats[1])
    assert unchanged == (batchnorm == "frozen") and not torch.equal(norm.weight, scale)
    assert norm.num_batches_tracked.item() == (0 if batchnorm == "frozen" else 8)


@pytest.mark.parametrize("strategy", ["finetune", "scratch"])
def test_frozen_batchnorm_keeps_pretrained_statistics_and_scratch_learns_its_own(strategy):
    exp = config.parse(tiny_experiment(strategies=[strategy], training={"epochs": 1, "batchnorm": "frozen"}))
    trainer = CellTrainer(expand(exp)[0], exp, data.DATASETS.get("cifar10").load())
    result = trainer.run(get_strategy(strategy).defaults, seed=0)
    norms = [m for m in result.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and result.steps > 0
    assert all((m.num_batches_tracked.item() > 0) == (strategy == "scratch") for m in norms)


@pytest.mark.parametrize("name", sorted(n for n, cls in STRATEGIES if cls.__module__.startswith("bench.strategies")))
def test_each_strategys_defaults_are_a_point_of_its_search_space(name):
    """Every suggestion of a built-in strategy's search space has a default, inside its range, and the study's
    first trial uses it."""
    cls = STRATEGIES.get(name)
    study = optuna.create_study()
    study.enqueue_trial(cls.defaults)
    trial = study.ask()
    hp = cls().search_space(trial)
    assert set(trial.distributions) == set(cls.defaults), "a default for each suggestion, and no other"
    for param, dist in trial.distributions.items():
        assert hp[param] == cls.defaults[param] and dist._contains(dist.to_internal_repr(hp[param])), param


def test_a_study_starts_from_the_strategys_defaults_when_asked():
    exp = config.parse(tiny_experiment(strategies=["bitfit"], tuning={"n_trials": 2, "first_trial": "defaults"}))
    cell = expand(exp)[0]
    trainer = CellTrainer(cell, exp, data.DATASETS.get("cifar10").load())
    where = stores.resolve(exp)
    tracker = Tracker(where.tracking, exp.name)
    with tracker.cell_run(cell, {}):
        _, study = tune(trainer, tracker, where.optuna)
    assert study.trials[0].params == BitFit.defaults and study.trials[1].params != BitFit.defaults
    sampled = config.parse(tiny_experiment(strategies=["bitfit"], tuning={"n_trials": 2}))
    assert expand(sampled)[0].key != cell.key  # a different protocol, so a different cell


def test_stopping_on_validation_loss_keeps_the_lowest_cross_entropy_and_its_weights():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    val = _toy(seed=1)
    plan = Schedule(60, evaluations=30, patience=100, monitor="val_loss")
    history = fit(model, [{"params": model.parameters()}], _toy(), val, plan, lr=0.5, weight_decay=0.0, seed=0)
    kept = best(history, plan)
    assert kept.val_loss == min(s.val_loss for s in history)
    assert evaluate(model, val) == pytest.approx((kept.val_acc, kept.val_loss))
    assert all(s.val_loss > kept.val_loss for s in history if s.step < kept.step)


def test_a_minimum_improvement_ignores_gains_smaller_than_it():
    history = [EvalStats(0, 0, math.nan, 0.50, 1.0), EvalStats(4, 0, 0.1, 0.55, 0.9), EvalStats(8, 0, 0.1, 0.62, 0.8)]
    assert best(history).step == 8
    assert best(history, Schedule(8, 2, min_delta=0.06)).step == 8  # 0.62 beats 0.50 by more than 0.06
    assert best(history, Schedule(8, 2, min_delta=0.15)).step == 0
    assert best(history, Schedule(8, 2, monitor="val_loss", min_delta=0.15)).step == 8  # 0.8 < 1.0 - 0.15
    assert min_delta("binomial", 100) == 0.05 and min_delta(0.01, 100) == 0.01 and min_delta("binomial", 0) == 0


def test_without_validation_examples_a_run_takes_its_whole_schedule_and_keeps_its_last_weights():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    plan = Schedule(20, evaluations=5, patience=1)
    history = fit(model, [{"params": model.parameters()}], _toy(), None, plan, lr=0.5, weight_decay=0.0, seed=0)
    assert [s.step for s in history] == [4, 8, 12, 16, 20]  # the training loss is still recorded
    assert all(math.isnan(s.val_acc) and s.train_loss > 0 for s in history)


def _ratios(model: torch.nn.Module, strength: float, steps: int, lr: float) -> dict[str, float]:
    """The penalty gradient ratios ``fit`` reports for strength/2 ||W||^2 on a linear model."""
    out: dict[str, float] = {}
    penalty = lambda step: strength / 2 * model.weight.pow(2).sum()  # noqa: E731
    plan = Schedule(steps, evaluations=2)
    fit(model, [{"params": model.parameters()}], _toy(), None, plan, lr, 0.0, 0, penalty, diagnostics=out)
    return out


def test_the_penalty_gradient_ratio_is_measured_at_the_first_and_last_steps():
    torch.manual_seed(0)
    weak, strong = (_ratios(torch.nn.Linear(4, 2), strength, steps=8, lr=0.1) for strength in (1e-4, 1.0))
    assert set(weak) == {"penalty_grad_ratio_first", "penalty_grad_ratio_last"}
    assert 0 < weak["penalty_grad_ratio_first"] < 1e-2 < strong["penalty_grad_ratio_first"]
    # the ratio is exact: for alpha/2 ||W||^2 the penalty's gradient is alpha * W at that step
    model = torch.nn.Linear(4, 2)
    first = _ratios(model, 1.0, steps=1, lr=0.0)["penalty_grad_ratio_first"]
    x, y = next(iter(_toy()(shuffle_seed=0)))
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ce = torch.sqrt(model.weight.grad.pow(2).sum() + model.bias.grad.pow(2).sum())
    assert first == pytest.approx(float(model.weight.detach().norm() / ce), rel=1e-5)
