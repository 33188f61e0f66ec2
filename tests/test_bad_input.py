"""Hostile and careless input, as a new user would give it: every case ends in exit code 2 with one ``error:`` line
per problem that names it, no traceback, nothing written.

Most cases run the command line in this process (``bench.cli.main``); the file-format cases also run it as a real
process, so that what a terminal shows is checked too.
"""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_experiment

from bench import cli


def _yaml(**overrides) -> str:
    return yaml.safe_dump(tiny_experiment(**overrides))


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)
# name -> (the file's bytes, words the error must contain)
FILES: dict[str, tuple[bytes, str]] = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a binary file, not YAML text"),
    "latin-1": (("description: café\n" + _yaml()).encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 1"),
    "utf-16 le (Notepad)": (codecs.BOM_UTF16_LE + _yaml().encode("utf-16-le"), "UTF-16 text"),
    "utf-16 be": (codecs.BOM_UTF16_BE + _yaml().encode("utf-16-be"), "UTF-16 text"),
    "2 MB": (b"description: '" + b"x" * 2_000_000 + b"'\n", "an experiment file is YAML of at most 1000 kB"),
    "100,000 nested brackets": (b"budgets: " + b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "40 nested lists": (("budgets: " + "[" * 40 + "5" + "]" * 40).encode(), "nested too deeply"),
    "alias bomb": ((BOMB + _yaml()).encode(), "more than 100,000 values once YAML aliases are expanded"),
    "many aliases": (
        ("x: &x 5\nbudgets: [" + ", ".join(["*x"] * 101) + "]\n").encode(),
        "more than 100 YAML aliases",
    ),
    "key twice at the top": ((_yaml() + "seeds: 4\n").encode(), "key 'seeds' is given twice in one mapping"),
    "key twice in a section": (b"training:\n  epochs: 2\n  epochs: 3\n", "key 'epochs' is given twice"),
    "a list, not a mapping": (b"- cifar10\n- mobilenetv2_100\n", "must be a YAML mapping"),
    "empty": (b"", "must be a YAML mapping"),
    "unclosed bracket": (b"budgets: [5, 10\n", "not valid YAML"),
    "tab indentation": (b"training:\n\tepochs: 2\n", "not valid YAML"),
}

# name -> (experiment overrides, words the error must contain)
FIELDS: dict[str, tuple[dict, str]] = {
    "unknown key": ({"seed": 3}, "unknown key 'seed' (did you mean 'seeds'?)"),
    "unknown nested key": ({"training": {"epoch": 2}}, "unknown key 'epoch' (did you mean 'epochs'?)"),
    "key in the wrong section": ({"epochs": 2}, "unknown key 'epochs' (it belongs under 'training:')"),
    "epochs: yes": ({"training": {"epochs": True}}, "'epochs' is a number, got True"),
    "seeds: true": ({"seeds": True}, "'seeds' is a number, got True"),
    "budget yes": ({"budgets": [True]}, "budget True is a boolean"),
    "budget 0": ({"budgets": [0]}, "budget 0 must be a positive number"),
    "budget twice": ({"budgets": [5, 5]}, "a budget is listed twice"),
    "budget a word": ({"budgets": ["ten"]}, "budgets.0"),
    "name ..": ({"name": ".."}, "would put results outside results/<name>/"),
    "name of 300 characters": ({"name": "a" * 300}, "at most 100 characters"),
    "name with a slash": ({"name": "a/b"}, "name: String should match pattern"),
    "unknown backbone": ({"backbones": ["mobilenetv2"]}, "unknown backbone 'mobilenetv2' (did you mean"),
    "unknown dataset": ({"datasets": ["cifar11"]}, "unknown dataset 'cifar11' (did you mean 'cifar10'?)"),
    "unknown strategy": ({"strategies": ["l2_sp"]}, "unknown strategy 'l2_sp' (did you mean 'l2sp'?)"),
    "strategy twice": ({"strategies": ["finetune", "finetune"]}, "a strategy is listed twice"),
    "backbone twice": ({"backbones": ["mobilenetv2_100", "mobilenetv2_100"]}, "'mobilenetv2_100' is listed twice"),
    "dataset twice": ({"datasets": ["cifar10", "cifar10"]}, "'cifar10' is listed twice"),
    "dataset without a backbone": ({"datasets": ["cifar10", "sms_spam"]}, "dataset 'sms_spam' is text"),
    "option of another modality": (
        {"backbones": [{"name": "mobilenetv2_100", "max_length": 64}]},
        "'max_length' applies to text backbones",
    ),
    "missing weights file": (
        {"backbones": [{"name": "mobilenetv2_100", "weights": "/no/such/weights.pth"}]},
        "weights: no such file or folder: /no/such/weights.pth",
    ),
    "unknown tracking scheme": ({"tracking_uri": "ftp://host/mlflow"}, "is not an MLflow tracking URI"),
    "unknown storage scheme": ({"optuna_storage": "redis://host/0"}, "is not an Optuna storage URL"),
    "steps and epochs": ({"training": {"steps": 10, "epochs": 2}}, "give either 'steps' or 'epochs'"),
    "steps and a cap": ({"training": {"steps": 10, "max_steps": 20}}, "give either 'steps' or 'epochs'"),
    "minimum above the cap": ({"training": {"min_steps": 50, "max_steps": 20}}, "min_steps (50) is above max_steps"),
    "unknown device": ({"training": {"device": "tpu"}}, "training.device: Input should be 'auto'"),
    "markup in a value": ({"backbones": ["[/bold]oops"]}, "unknown backbone '[/bold]oops'"),
    "a huge bad value": ({"backbones": ["x" * 100_000]}, "(99920 more characters)"),
    "bad ray address": ({"cluster": {"ray": "nowhere"}}, "Ray address 'nowhere'"),
    "fractional GPUs above one": ({"cluster": {"gpus_trained": 1.5}}, "Ray shares a GPU only below 1"),
    "negative seeds": ({"seeds": -1}, "seeds.min: Input should be greater than or equal to 1"),
}


def _check(code: int, err: str, words: str, results: Path) -> None:
    assert code == 2, err
    assert "Traceback" not in err and words in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]  # argparse's usage
    assert lines and all(line.startswith(("error:", "bench run: error:")) for line in lines), err
    assert len(err) < 4000, f"{len(err)} characters of errors"
    assert not [p for p in results.rglob("*") if p.is_file()] if results.exists() else True, "something was written"


def _main(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_file_that_is_not_a_usable_experiment(name, command, tmp_path, results_root, capsys):
    content, words = FILES[name]
    path = tmp_path / "exp.yaml"
    path.write_bytes(content)
    code, err = _main([command, str(path)], capsys)
    _check(code, err, words, results_root)


@pytest.mark.parametrize("name", FIELDS)
def test_a_field_that_is_wrong(name, tmp_path, results_root, capsys):
    overrides, words = FIELDS[name]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(**overrides)))
    code, err = _main(["run", str(path)], capsys)
    _check(code, err, words, results_root)


def test_several_problems_give_one_error_line_each(tmp_path, results_root, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(seed=3, training={"epoch": 2}, budgets=[0])))
    code, err = _main(["validate", str(path)], capsys)
    _check(code, err, "unknown key 'seed'", results_root)
    assert len(err.strip().splitlines()) == 3 and "unknown key 'epoch'" in err and "budget 0" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--results", "{file}", "run", "{exp}"], "not a folder"),
        (["--data-root", "/no/such/data", "run", "{exp}"], "--data-root /no/such/data: no such folder"),
        (["run", "{exp}", "--workers", "0"], "expected a number of workers"),
        (["run", "{exp}", "--workers", "many"], "expected a number of workers"),
        (["run", "/no/such/file.yaml"], "no such experiment file"),
        (["run", "{folder}"], "no such experiment file"),
        (["run", "{exp}", "--tracking-uri", "sqlite:////etc/hostname/x/mlflow.db"], "cannot create or write the store"),
        (["run", "{exp}", "--optuna-storage", "sqlite:////etc/hostname/optuna.db"], "optuna_storage sqlite:"),
    ],
)
def test_a_flag_that_is_wrong(args, words, tmp_path, results_root, capsys):
    exp, file = tmp_path / "exp.yaml", tmp_path / "a-file"
    exp.write_text(yaml.safe_dump(tiny_experiment()))
    file.write_text("")
    argv = [a.format(exp=exp, file=file, folder=tmp_path) for a in args]
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    _check(code, err, words, results_root)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("MLFLOW_TRACKING_URI", "ftp://host/mlflow", "tracking_uri (from the file, a flag or the environment)"),
        ("TRANSFERBENCH_OPTUNA_STORAGE", "redis://host/0", "is not an Optuna storage URL"),
        ("TRANSFERBENCH_RESULTS", "{file}", "not a folder"),
    ],
)
def test_a_bad_store_or_folder_in_the_environment_is_named(variable, value, words, tmp_path, capsys, monkeypatch):
    exp, file = tmp_path / "exp.yaml", tmp_path / "a-file"
    exp.write_text(yaml.safe_dump(tiny_experiment()))
    file.write_text("")
    monkeypatch.setenv(variable, value.format(file=file))
    code, err = _main(["run", str(exp)], capsys)
    _check(code, err, words, tmp_path / "results")


def test_a_bad_environment_variable_is_named(tmp_path, results_root, capsys, monkeypatch):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(tiny_experiment()))
    monkeypatch.setenv("TRANSFERBENCH_WORKERS", "lots")
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", str(exp)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "'lots'" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["binary", "utf-16 le (Notepad)", "alias bomb", "100,000 nested brackets"])
def test_in_a_real_process_too(name, tmp_path):
    content, words = FILES[name]
    path = tmp_path / "exp.yaml"
    path.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--results", str(tmp_path / "results"), "run", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
    )
    _check(done.returncode, done.stderr, words, tmp_path / "results")


def test_a_dry_run_warns_when_a_dataset_is_not_in_the_data_root(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(tiny_experiment()))
    empty = tmp_path / "no-datasets"
    empty.mkdir()
    monkeypatch.setenv("TRANSFERBENCH_DATA", os.environ["TRANSFERBENCH_DATA"])  # restored after: main sets it
    assert cli.main(["--data-root", str(empty), "run", str(exp), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: dataset 'cifar10' is not in the data root" in err


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# name -> (experiment overrides, environment, words the error must contain): what only shows once a run would
# write or train, checked before anything is written
BEFORE_WRITING: dict[str, tuple[dict, dict, str]] = {
    "tracking store under /proc": (
        {"tracking_uri": "sqlite:////proc/nope/x.db"},
        {},
        "tracking_uri sqlite:////proc/nope/x.db: cannot create or write the store there",
    ),
    "optuna store under /proc, from the environment": (
        {},
        {"TRANSFERBENCH_OPTUNA_STORAGE": "sqlite:////proc/nope/optuna.db"},
        "optuna_storage sqlite:////proc/nope/optuna.db: cannot create or write the store there",
    ),
    "store under a file": ({"optuna_storage": "sqlite:////etc/hostname/o.db"}, {}, "/etc/hostname is not a folder"),
    "unknown scheme, from the environment": (
        {},
        {"MLFLOW_TRACKING_URI": "ftp://host/mlflow"},
        "not an MLflow tracking",
    ),
    "cuda without CUDA": (
        {"training": {"epochs": 2, "batch_size": 16, "device": "cuda"}},
        {},
        "training.device: 'cuda', but this machine has no CUDA device",
    ),
    "unknown timm model": ({"backbones": ["timm:not_a_model"]}, {}, "timm has no model 'not_a_model'"),
    "hub text model not here, offline": (
        {"backbones": ["hf:nobody/nothing"], "datasets": ["sms_spam"]},
        {"HF_HUB_OFFLINE": "1"},
        "backbone 'hf:nobody/nothing': its weights (nobody/nothing) are not in the local cache",
    ),
    # without HF_HUB_OFFLINE the hub is asked: here it cannot be reached, online it has no such model
    "hub text model not here, hub asked": (
        {"backbones": ["hf:nobody/nothing"], "datasets": ["sms_spam"]},
        {"HF_HUB_OFFLINE": "0"},
        "backbone 'hf:nobody/nothing': ",
    ),
}


def _one_error(code: int, err: str, words: str, results: Path, cache: Path) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and words in err, err
    assert not results.exists() and not cache.exists(), "something was written"


@pytest.mark.parametrize("name", BEFORE_WRITING)
@pytest.mark.parametrize("command", [["validate"], ["run", "--dry-run"], ["run"]], ids=" ".join)
def test_what_a_run_would_fail_on_is_refused_before_anything_is_written(
    name, command, tmp_path, results_root, capsys, monkeypatch
):
    overrides, environment, words = BEFORE_WRITING[name]
    if "device" in overrides.get("training", {}) and _has_cuda():
        pytest.skip("this machine has a CUDA device")
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(cache))
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(**overrides)))
    code = cli.main([command[0], str(path), *command[1:]])
    _one_error(code, capsys.readouterr().err, words, results_root, cache)


def _without_root_privileges() -> list[str] | None:
    """A command prefix that runs a process without root's right to write anywhere: none needed for a user; for
    root, a new user namespace (its files then obey their owner's permission bits); None where that is refused."""
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--user"]
    try:
        works = subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        works = False
    return prefix if works else None


@pytest.mark.parametrize("command", [["validate"], ["run", "--dry-run"], ["run"]], ids=" ".join)
def test_a_store_in_a_folder_without_write_permission_is_refused(command, tmp_path, results_root, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(optuna_storage=f"sqlite:///{locked}/optuna.db")))
    args = [command[0], str(path), *command[1:]]
    prefix = _without_root_privileges()
    if prefix is None:
        pytest.skip("root writes into any folder, and `unshare --user` (to run without that right) is refused here")
    if prefix:  # root: the command in a process of its own, without the right
        done = subprocess.run([*prefix, sys.executable, "-m", "bench", *args], capture_output=True, text=True)
        code, err = done.returncode, done.stderr
    else:
        code, err = cli.main(args), capsys.readouterr().err
    _one_error(code, err, "Permission denied", results_root, tmp_path / "no-cache")


@pytest.mark.parametrize("experiment", ["/no/such/experiment.yaml", "no_such_experiment"])
def test_a_report_of_a_missing_experiment_writes_nothing(experiment, tmp_path, results_root, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    code = cli.main(["report", experiment])
    _one_error(code, capsys.readouterr().err, "no such experiment file", results_root, tmp_path / "cache")


def test_a_report_to_a_store_that_cannot_be_written_writes_nothing(tmp_path, results_root, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment()))
    code = cli.main(["report", str(path), "--tracking-uri", "sqlite:////proc/nope/x.db"])
    _one_error(code, capsys.readouterr().err, "cannot create or write the store", results_root, tmp_path / "no-cache")


def test_a_valid_dry_run_passes_and_writes_nothing(tmp_path, results_root, capsys, monkeypatch):
    import huggingface_hub.constants

    hub = tmp_path / "hub"  # a hub model found in the local cache, as a download once online leaves it
    (hub / "models--someone--tiny" / "refs").mkdir(parents=True)
    (hub / "models--someone--tiny" / "refs" / "main").write_text("abc")
    (hub / "models--someone--tiny" / "snapshots" / "abc").mkdir(parents=True)
    (hub / "models--someone--tiny" / "snapshots" / "abc" / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    for overrides in (
        {},
        {"backbones": [{"name": "timm:test_efficientnet", "weights": str(weights)}]},  # a local weights file
        {"backbones": ["hf:someone/tiny"], "datasets": ["sms_spam"]},
        {"backbones": [f"hf:{hub}"], "datasets": ["sms_spam"]},  # a local model folder
    ):
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(tiny_experiment(**overrides)))
        assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err
        assert cli.main(["run", str(path), "--dry-run"]) == 0, capsys.readouterr().err
        assert not results_root.exists(), overrides
