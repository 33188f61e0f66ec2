"""Experiment files: bad ones end with exit code 2 and a message naming the field; good ones validate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import tiny_experiment

from bench import config, matrix
from bench.cli import main

BAD = {
    "unknown top-level key": ({"epochs": 3}, ["epochs", "belongs under 'training:'"]),
    "unknown nested key": ({"training": {"epoch": 3}}, ["training", "epoch", "did you mean 'epochs'"]),
    "wrong type": ({"seeds": "three"}, ["seeds", "a number of seeds", "'three'"]),
    "out of range": ({"training": {"epochs": 0}}, ["training.epochs", "greater than or equal to 1"]),
    "unknown backbone": (
        {"backbones": ["mobilenetv2"]},
        ["backbones.0.name", "mobilenetv2", "did you mean 'mobilenetv2_100'"],
    ),
    "unknown dataset": ({"datasets": ["cifar100"]}, ["datasets.0.name", "cifar100", "did you mean 'cifar10'"]),
    "unknown strategy": ({"strategies": ["fine_tune"]}, ["strategies", "fine_tune", "did you mean 'finetune'"]),
    "bad budget": ({"budgets": [0]}, ["budgets", "budget 0"]),
    "budget word": ({"budgets": ["everything"]}, ["budgets", "'all'"]),
    "bad pruner": ({"tuning": {"pruner": "asha"}}, ["tuning.pruner", "'median', 'hyperband' or 'none'", "asha"]),
    "empty strategies": ({"strategies": []}, ["strategies", "at least 1"]),
    "bad device": ({"training": {"device": "tpu"}}, ["training.device", "tpu"]),
    "negative input size": ({"backbones": [{"name": "mobilenetv2_100", "input_size": -1}]}, ["input_size", "16"]),
}


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_experiment_exits_2_and_names_the_field(case, tmp_path, capsys):
    override, expected = BAD[case]
    path = _write(tmp_path, tiny_experiment(**override))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} missing from:\n{err}"


def test_unparseable_and_missing_files_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("backbones: [unclosed\n")
    assert main(["validate", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such experiment file" in capsys.readouterr().err


def test_every_problem_is_listed_at_once(tmp_path, capsys):
    path = _write(tmp_path, tiny_experiment(seeds=0, strategies=["nope"]))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "seeds" in err and "nope" in err


def test_shipped_experiment_files_are_valid(capsys):
    for path in sorted(Path("experiments").glob("*.yaml")):
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_name_defaults_to_file_stem_and_defaults_resolve(tmp_path):
    from bench import config

    data = tiny_experiment()
    del data["name"]
    path = tmp_path / "my_study.yaml"
    path.write_text(yaml.safe_dump(data))
    exp = config.load(path)
    assert exp.name == "my_study"
    assert exp.tuning.pruner == "median" and exp.training.device == "auto"


def test_dry_run_prints_the_matrix_without_training(tmp_path, capsys, results_root):
    path = _write(tmp_path, tiny_experiment(budgets=[4, 8]))
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # trials only where a cell holds validation examples out: finetune and scratch at 8 per class (3 of them);
    # 4 per class leaves too few, and the probe cross-validates
    assert "6 cells" in out and "4 Optuna trials" in out and "16 training runs" in out
    assert out.count("│ to run") == 6
    assert not (results_root / "mlflow.db").exists()


def test_a_dataset_carries_its_own_training_settings_and_they_are_checked():
    spec = {
        "name": "x",
        "backbones": ["tiny_image"],
        "datasets": [{"name": "cifar10", "training": {"max_steps": 200}}],
        "strategies": ["finetune"],
        "budgets": [5],
        "training": {"epochs": 4, "max_steps": 80, "patience": 2},
    }
    exp = config.parse(spec)
    assert exp.training_for("cifar10").max_steps == 200 and exp.training_for("cifar10").patience == 2
    assert exp.training.max_steps == 80
    plain = config.parse({**spec, "datasets": ["cifar10"]})
    assert matrix.expand(exp)[0].key != matrix.expand(plain)[0].key  # its settings decide its cells
    for training, words in [
        ({"max_step": 2}, "unknown key 'max_step' (did you mean 'max_steps'?)"),
        ({"threads": 2}, "training.threads is the experiment's"),
        ({"max_steps": 5}, "min_steps (20) is above max_steps (5)"),
    ]:
        bad = {**spec, "datasets": [{"name": "cifar10", "training": training}], "training": {"min_steps": 20}}
        with pytest.raises(config.ConfigError, match=re.escape(words)):
            config.parse(bad)
    twice = {**spec, "datasets": ["cifar10", {"name": "cifar10", "training": {"epochs": 2}}]}
    with pytest.raises(config.ConfigError, match="listed twice"):
        config.parse(twice)


def test_two_strategies_of_one_baseline_role_are_an_error(monkeypatch):
    from bench.strategies import STRATEGIES
    from bench.strategies.scratch import Scratch

    class ScratchAgain(Scratch):
        name = "test_scratch_again"

    monkeypatch.setitem(STRATEGIES._entries, ScratchAgain.name, ScratchAgain)
    both = "strategies: strategies 'scratch' and 'test_scratch_again' both have the role 'from scratch'"
    with pytest.raises(config.ConfigError, match=both):
        config.parse(tiny_experiment(strategies=["finetune", "scratch", ScratchAgain.name]))
    config.parse(tiny_experiment(strategies=["finetune", "scratch", "feature_extraction"]))  # one of each role


def test_seeds_take_a_number_or_a_race():
    spec = {
        "name": "x",
        "backbones": ["tiny_image"],
        "datasets": ["cifar10"],
        "strategies": ["finetune"],
        "budgets": [5],
    }
    plain = config.parse({**spec, "seeds": 4}).seeds
    assert (plain.min, plain.most, plain.races) == (4, 4, False)
    race = config.parse({**spec, "seeds": {"min": 3, "max": 10}}).seeds
    assert (race.min, race.most, race.races) == (3, 10, True)
    with pytest.raises(config.ConfigError, match=re.escape("seeds.max (2) is below seeds.min (3)")):
        config.parse({**spec, "seeds": {"min": 3, "max": 2}})
    with pytest.raises(config.ConfigError, match="did you mean 'max'"):
        config.parse({**spec, "seeds": {"min": 3, "mx": 5}})
