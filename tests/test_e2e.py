"""The whole pipeline on a tiny real matrix: MLflow holds the expected runs; a rerun trains nothing."""

from __future__ import annotations

import math
import re

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_experiment

from bench import config, environment, matrix, results
from bench.analysis import stats
from bench.analysis.findings import summarize
from bench.cli import main
from bench.tracking import COMPARISONS


def _runs(results_root):
    mlflow.set_tracking_uri(f"sqlite:///{results_root / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("tiny")
    assert exp.artifact_location == (results_root / "artifacts").resolve().as_uri()
    return mlflow.search_runs([exp.experiment_id])


def test_smoke_matrix_end_to_end_then_resume(tmp_path, results_root, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment()))
    assert main(["run", str(path)]) == 0

    summary = pd.read_csv(results_root / "tiny" / "summary.csv")
    assert sorted(summary.strategy) == ["feature_extraction", "finetune", "scratch"]
    assert (summary.seeds == 2).all() and summary.test_acc_mean.between(0, 1).all()
    scratch = summary.set_index("strategy").loc["scratch", "test_acc_mean"]
    assert (summary.scratch_acc_mean == scratch).all()
    assert (summary.gain_over_scratch - (summary.test_acc_mean - scratch)).abs().max() < 1e-9

    out = results_root / "tiny"
    report = (out / "report.md").read_text()
    for section in (
        "## Verdicts",
        "## Strategies across the matrix: Friedman test and critical differences",
        "## Transferability scores against realised accuracy",
        "## Gain over scratch",
        "## Test accuracy per cell",
        "## Data efficiency",
        "## Strategy ranks and win rates",
        "## Against published figures",
    ):
        assert section in report
    for png in ("gain_heatmap.png", "accuracy_vs_budget.png", "ranks.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and png in report
    assert "cifar10 | tiny_image | 7 | 40 | 30 | 50 | finetune |  | 2 |" in report  # n_train, n_val, n_test
    assert f"torch {torch.__version__}" in report and "torch threads" in report  # what produced it
    commit, lockfile = environment.checkout()["git_commit"], environment.checkout()["lockfile"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", commit) and re.fullmatch(r"[0-9a-f]{16}|none", lockfile)
    assert f"git commit {commit}, " in report
    records = [results.load_cell("tiny", c) for c in matrix.expand(config.load(path))]
    verdicts = stats.verdicts(records)
    best = verdicts.best.iloc[0]
    page = (out / "report.html").read_text()
    assert f"<td>cifar10</td>\n<td>7</td>\n<td>{best}</td>\n<td>best</td>" in page  # the verdict table
    written = pd.read_csv(out / "verdicts.csv")
    assert {"dataset", "budget", "strategy", "verdict", "diff", "ci_low", "ci_high", "p_improve"} <= set(written)
    assert written.strategy.tolist() == verdicts.strategy.tolist() and written.verdict.iloc[0] == "best"
    assert set(written.verdict) <= {"best", "worse", "equivalent", "undecided"}
    gains = pd.read_csv(out / "gains.csv")
    assert sorted(gains.strategy) == ["feature_extraction", "finetune"]
    assert set(gains.gain_verdict) <= {"better", "worse", "equivalent", "undecided"}
    probe = pd.read_csv(out / "probe.csv")
    assert sorted(probe.strategy) == ["finetune", "scratch"] and "## Against the linear probe" in report
    assert page.count('src="data:image/png;base64,') == report.count("![") >= 3 and "http" not in page
    assert (summary.examples_per_class == 7).all()
    # every label a cell touched is in its budget: the probe trains on all 7 per class, the others hold 3 out
    assert (summary.n_train + summary.n_val == 70).all() and (summary.n_test == 50).all()
    assert summary.set_index("strategy").n_val.to_dict() == {"feature_extraction": 0, "finetune": 30, "scratch": 30}
    predictions = pd.read_csv(out / "predictions.csv.gz")
    assert len(predictions) == 3 * 2 * 50 and set(predictions.strategy) == set(summary.strategy)
    for strategy, rows in predictions.groupby("strategy"):  # the stored predictions give the reported accuracy
        per_seed = rows.groupby("seed").apply(lambda r: (r.predicted == r.true).mean(), include_groups=False)
        assert per_seed.mean() == pytest.approx(summary.set_index("strategy").loc[strategy, "test_acc_mean"])
        assert rows.groupby("seed").test_index.nunique().eq(50).all()
    assert "## Labels and test examples" in report

    runs = _runs(results_root)
    summary_run = runs[runs["tags.stage"] == "summary"]
    assert len(summary_run) == 1
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(summary_run.run_id.iloc[0])}
    assert {
        "report.md",
        "report.html",
        "summary.csv",
        "verdicts.csv",
        "gains.csv",
        "probe.csv",
        "gain_heatmap.png",
        "accuracy_vs_budget.png",
        "ranks.png",
    } <= logged
    note = mlflow.get_experiment_by_name("tiny").tags["mlflow.note.content"]
    assert f"- cifar10, 7 examples per class: **{best}**, test accuracy " in note
    assert "`report.html` in the artifacts of the run `tiny/summary`" in note
    assert "transferability.csv" in logged
    scored = pd.read_csv(out / "transferability.csv")
    assert len(scored) == 2 and scored[["logme", "leep", "nce", "h_score", "reg_h_score"]].notna().all().all()
    assert "Too few backbones to conclude anything" in report  # one backbone: said plainly, no correlation
    per_backbone = runs[runs["tags.stage"] == "transferability"]
    assert per_backbone["tags.mlflow.runName"].tolist() == ["transferability/tiny_image"]
    assert per_backbone["metrics.logme.cifar10.7"].iloc[0] == pytest.approx(scored.logme.mean())
    parents = runs[runs["tags.stage"] == "cell"]
    assert sorted(parents["tags.mlflow.runName"]) == [
        "cifar10/tiny_image/feature_extraction/k7",
        "cifar10/tiny_image/finetune/k7",
        "cifar10/tiny_image/scratch/k7",
    ]
    for tag in ("modality", "backbone", "dataset", "budget", "strategy", "cell_key"):
        assert parents[f"tags.{tag}"].notna().all(), tag
    assert parents["metrics.test_acc_mean"].notna().all() and parents["metrics.test_macro_f1_mean"].notna().all()
    assert (parents["metrics.cell_seconds"] > 0).all()  # each cell's compute, beside its accuracy
    probe = parents["tags.strategy"] == "feature_extraction"
    assert (parents[probe]["metrics.steps_median"] == 0).all() and (parents[~probe]["metrics.steps_median"] > 0).all()
    transfer = parents[parents["tags.strategy"] != "scratch"]
    assert transfer["metrics.gain_over_scratch"].notna().all()
    assert transfer["metrics.transfer.logme"].notna().all()  # the pretrained backbone's score, on its cells
    compared = summarize(records).set_index("cell_key")
    for _, parent in parents.iterrows():
        m = {name: parent[f"metrics.{name}"] for name in COMPARISONS}
        expected = compared.loc[parent["tags.cell_key"]]
        for name, value in m.items():  # the report's figures on the run, and none where the report has none
            assert value == expected[name] or (math.isnan(value) and math.isnan(expected[name])), name
        assert m["test_acc_ci_low"] <= m["test_acc_mean"] <= m["test_acc_ci_high"] and m["examples_per_class"] == 7
        if parent["tags.strategy"] == "scratch":
            assert m["gain_over_scratch"] == 0 and math.isnan(m["gain_ci_low"]) and math.isnan(m["p_improve"])
        else:  # 2 seeds: an interval and a probability of improvement always
            assert m["gain_ci_low"] <= m["gain_over_scratch"] <= m["gain_ci_high"]
            assert 0 <= m["p_improve"] <= 1
        assert parent["tags.env.git_commit"] == commit and parent["tags.env.lockfile"] == lockfile
    assert parents[parents["tags.strategy"] == "scratch"]["metrics.transfer.logme"].isna().all()
    for _, parent in parents.iterrows():
        children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
        probe = parent["tags.strategy"] == "feature_extraction"  # no trials: its C is cross-validated
        assert sorted(children["tags.stage"]) == ["final", "final"] + ([] if probe else ["trial", "trial"])
        finals = children[children["tags.stage"] == "final"]
        # the probe tunes nothing (it chooses its C by cross-validation) and records how its fit converged
        tuned = "metrics.probe_converged" if parent["tags.strategy"] == "feature_extraction" else "params.lr"
        assert finals["metrics.test_acc"].notna().all() and finals[tuned].notna().all()
        trials = children[children["tags.stage"] == "trial"]
        assert (trials["tags.strategy"] == parent["tags.strategy"]).all()
        assert parent["tags.env.torch"] == torch.__version__ and int(parent["tags.env.threads"]) >= 1
    client = mlflow.MlflowClient()
    for parent_id in parents.run_id:
        logged = {a.path for a in client.list_artifacts(parent_id)}
        assert {"confusion_matrix.png", "predictions.csv"} <= logged  # one per cell
    final_id = runs[runs["tags.stage"] == "final"].run_id.iloc[0]
    assert {a.path for a in client.list_artifacts(final_id)} == {"test_metrics.json"}
    # 4 training images x 10 classes in batches of 16: 3 steps an epoch, 2 epochs; 10 validations asked, at most
    # one a step
    finetune = parents[parents["tags.strategy"] == "finetune"].run_id.iloc[0]
    trial_id = runs[(runs["tags.stage"] == "trial") & (runs["tags.mlflow.parentRunId"] == finetune)].run_id.iloc[0]
    assert [m.step for m in client.get_metric_history(trial_id, "val_acc")] == [1, 2, 3, 4, 5, 6]
    assert len(client.get_metric_history(trial_id, "train_loss")) == 6
    probe = runs[(runs["tags.stage"] == "final") & (runs["tags.strategy"] == "feature_extraction")]
    assert (probe["metrics.probe_converged"] == 1).all() and (probe["metrics.steps"] == 0).all()

    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 3 and "done " not in out
    assert len(_runs(results_root)) == len(runs)
    for _, parent in parents.iterrows():  # the report written again logs nothing that did not change
        for name in set(COMPARISONS) - {"test_acc_mean"}:  # which the cell's own run logs too
            points = len(client.get_metric_history(parent.run_id, name))
            assert points == (0 if math.isnan(parent[f"metrics.{name}"]) else 1), name
        scored = 0 if parent["tags.strategy"] == "scratch" else 1
        assert len(client.get_metric_history(parent.run_id, "transfer.logme")) == scored
    backbone_run = per_backbone.run_id.iloc[0]
    assert len(client.get_metric_history(backbone_run, "logme.cifar10.7")) == 1
    pd.testing.assert_frame_equal(pd.read_csv(results_root / "tiny" / "summary.csv"), summary)


def test_workers_take_the_largest_budgets_first_so_the_matrix_does_not_end_on_one_long_cell():
    from bench.runner import _longest_first

    cells = matrix.expand(config.parse(tiny_experiment(budgets=[4, "all", 10], strategies=["finetune", "scratch"])))
    ordered = _longest_first(cells)
    assert [c.budget for c in ordered] == ["all", "all", 10, 10, 4, 4]
    for budget in (4, "all", 10):  # matrix order otherwise
        assert [c for c in ordered if c.budget == budget] == [c for c in cells if c.budget == budget]


def test_a_crashed_run_resumes_without_redoing_finished_seeds(tmp_path, results_root, monkeypatch, capsys):
    from bench.training_run import CellTrainer

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(strategies=["finetune"])))
    real = CellTrainer.run
    calls = {"n": 0}

    def crash_on_second_final(self, hp, seed, test=False, **kw):
        if test:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real(self, hp, seed, test=test, **kw)

    monkeypatch.setattr(CellTrainer, "run", crash_on_second_final)
    assert main(["run", str(path)]) == 130  # Ctrl-C: one line, not a traceback
    assert "interrupted" in capsys.readouterr().err
    assert (results_root / "tiny" / "cells").is_dir() and not list((results_root / "tiny" / "cells").glob("*.json"))
    stopped = _runs(results_root)
    assert set(stopped.status) <= {"FINISHED", "KILLED"} and (stopped.status == "KILLED").sum() == 2  # seed 1, cell
    monkeypatch.setattr(CellTrainer, "run", real)
    tests_before = calls["n"]
    assert main(["run", str(path)]) == 0
    runs = _runs(results_root)
    assert (runs["tags.stage"] == "cell").sum() == 1  # the unfinished parent run was resumed, not duplicated
    assert (runs["tags.stage"] == "trial").sum() == 2
    finals = runs[runs["tags.stage"] == "final"]
    assert sorted(finals["tags.seed"]) == ["0", "1"] and (finals.status == "FINISHED").all()  # seed 1's run reused
    assert (runs.status == "FINISHED").all()
    assert tests_before == 2


def test_a_cell_whose_every_trial_diverges_fails_alone_and_says_what_to_change(
    tmp_path, results_root, monkeypatch, capsys
):
    from bench.loop import DivergedError
    from bench.training_run import CellTrainer

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(strategies=["scratch", "finetune"])))
    real = CellTrainer.run

    def finetune_diverges(self, hp, seed, test=False, **kw):
        if self.cell.strategy == "finetune":
            raise DivergedError("loss is nan at step 1")
        return real(self, hp, seed, test=test, **kw)

    monkeypatch.setattr(CellTrainer, "run", finetune_diverges)
    assert main(["run", str(path)]) == 1  # the summary is written; the exit code says a cell is missing
    assert pd.read_csv(results_root / "tiny" / "summary.csv").strategy.tolist() == ["scratch"]
    assert len(list((results_root / "tiny" / "cells").glob("*.failed.json"))) == 1
    out = capsys.readouterr().out
    assert "none of 2 trials completed" in out and "raise tuning.n_trials" in out
    monkeypatch.setattr(CellTrainer, "run", real)
    assert main(["run", str(path)]) == 1  # its trials are spent: the same failure, without training again
    assert "none of 2 trials completed" in capsys.readouterr().out


@pytest.mark.slow
def test_a_real_pretrained_backbone_end_to_end_reads_cifar_far_above_chance(tmp_path, results_root):
    """The one end-to-end run on real weights (the others use the tiny random backbone): ImageNet's MobileNetV2
    features, probed at 4 examples per class, read CIFAR-10 well above its 10 % chance on 50 test images."""
    path = tmp_path / "real.yaml"
    real = tiny_experiment(backbones=[{"name": "mobilenetv2_100", "input_size": 64}], strategies=["feature_extraction"])
    path.write_text(yaml.safe_dump(real))
    assert main(["run", str(path)]) == 0
    summary = pd.read_csv(results_root / "tiny" / "summary.csv")
    assert summary.backbone.tolist() == ["mobilenetv2_100"] and summary.test_acc_mean.iloc[0] > 0.2
