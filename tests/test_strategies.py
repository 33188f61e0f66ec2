"""Strategies through the one loop: what trains, what stays frozen, where weights start."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_experiment

from bench import backbones, config, data
from bench.matrix import expand
from bench.strategies import STRATEGIES
from bench.trainer import CellTrainer

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
