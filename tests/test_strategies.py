"""Strategies through the one loop: what trains, what stays frozen, where weights start."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_experiment

from bench import backbones, config, data
from bench.matrix import expand
from bench.strategies import STRATEGIES, Hyperparameter, Strategy
from bench.training_run import CellTrainer

HP = {"lr": 1e-2, "weight_decay": 1e-4, "C": 1.0}


@pytest.fixture(scope="module")
def trainers():
    exp = config.parse(tiny_experiment())
    ds = data.DATASETS.get("cifar10").load()
    return {cell.strategy: CellTrainer(cell, exp, ds) for cell in expand(exp)}


def _pretrained_state(trainer):
    bb = backbones.resolve(trainer.cell.backbone.name).build(pretrained=True, **trainer.cell.backbone.options())
    return {k: v.clone() for k, v in bb.state_dict().items()}


def test_feature_extraction_leaves_the_backbone_bit_identical(trainers):
    t = trainers["feature_extraction"]
    result = t.run(HP, seed=0)
    for key, value in _pretrained_state(t).items():
        assert torch.equal(result.model.backbone.state_dict()[key], value), key
    assert not torch.equal(result.model.head.weight, t.build_model(0).head.weight)  # the probe fit the head
    assert result.probe.converged and result.steps == 0 and result.history == []  # no gradient loop ran


def test_finetune_starts_pretrained_and_changes_the_backbone(trainers):
    t = trainers["finetune"]
    assert torch.equal(t.build_model(0).backbone.model.conv_stem.weight, _pretrained_state(t)["model.conv_stem.weight"])
    result = t.run(HP, seed=0)
    assert not torch.equal(result.model.backbone.model.conv_stem.weight, _pretrained_state(t)["model.conv_stem.weight"])


def test_scratch_starts_from_random_weights_of_the_same_architecture(trainers):
    t = trainers["scratch"]
    model = t.build_model(0)
    pre = _pretrained_state(t)
    assert set(model.backbone.state_dict()) == set(pre)
    assert not torch.equal(model.backbone.model.conv_stem.weight, pre["model.conv_stem.weight"])


@pytest.mark.parametrize("name", ["feature_extraction", "finetune"])
def test_same_seed_same_result(trainers, name):
    t = trainers[name]
    a, b = t.run(HP, seed=1, test=True), t.run(HP, seed=1, test=True)
    assert (a.test_pred == b.test_pred).all() and a.history == b.history


def test_every_builtin_strategy_has_a_description_and_a_search_space():
    import optuna

    for name, cls in STRATEGIES:
        assert cls.name == name and cls.description
        trial = optuna.create_study().ask()
        hp = cls().search_space(trial)
        assert set(trial.params) <= set(hp)
        assert {"lr", "weight_decay"} <= set(hp) or not hp  # the loop's settings, or nothing (a probe sweeps its C)


class _Parent(Strategy):
    name, description = "test_parent", "declares one hyperparameter of its own"
    hyperparameters = {"k": Hyperparameter(1, 6, type="int", default=2, source="a test")}


class _Child(_Parent):
    name, description = "test_child", "changes one inherited default, fixes one, removes one"
    hyperparameters = {
        "weight_decay": Hyperparameter(type="fixed", default=0.0, source="a test"),
        "lr": Strategy.hyperparameters["lr"].with_default(1e-3, source="a test"),
        "k": None,
    }


def test_hyperparameters_merge_along_the_class_hierarchy_in_their_inherited_order():
    assert list(_Parent.hyperparameters) == ["lr", "weight_decay", "k"]
    assert list(_Child.hyperparameters) == ["lr", "weight_decay"]
    lr = _Child.hyperparameters["lr"]
    assert (lr.low, lr.high, lr.scale, lr.default) == (1e-5, 1e-2, "log", 1e-3)
    assert _Child.defaults == {"lr": 1e-3}  # a fixed value is not tuned, so it has no default
    assert list(Strategy.hyperparameters) == ["lr", "weight_decay"]  # the base class is left as it was


def test_the_search_space_follows_the_declaration():
    import optuna

    trial = optuna.create_study().ask()
    hp = _Child().search_space(trial)
    assert list(hp) == ["lr", "weight_decay"] and hp["weight_decay"] == 0.0 and list(trial.distributions) == ["lr"]
    assert trial.distributions["lr"] == optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)


def test_a_class_that_writes_its_own_defaults_and_search_space_keeps_them():
    import optuna

    class Own(Strategy):
        name, description = "test_own", "an older plugin: its own defaults and search space"
        defaults = {"lr": 1e-3}

        def search_space(self, trial):
            return {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True), "weight_decay": 0.0}

    study = optuna.create_study()
    study.enqueue_trial(Own.defaults)
    assert Own().search_space(study.ask()) == {"lr": 1e-3, "weight_decay": 0.0}


def test_a_default_outside_its_range_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        Hyperparameter(1e-5, 1e-2, scale="log", default=0.1, source="a test")


def test_a_misspelt_hook_is_an_error_that_names_the_hook():
    with pytest.raises(TypeError) as err:

        class Typo(Strategy):
            name, description = "test_typo", "a misspelt extra_loss"

            def extra_los(self, model, hp, step):
                return None

    message = str(err.value)
    assert "Typo" in message and "'extra_los'" in message and "did you mean 'extra_loss'" in message
    assert "param_groups" in message  # the list of hooks


def test_a_private_helper_is_fine():
    class Helped(Strategy):
        name, description = "test_helped", "a private helper"

        def _helper(self):
            return None

    assert Helped.defaults == Strategy.defaults
