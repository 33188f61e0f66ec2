"""Transferability scores of real backbones on real data: only training examples are read, rows are reused,
`bench rank` prints a ranking, and the report sets scores against outcomes when there are enough backbones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import tiny_experiment

from bench import config, paths
from bench.analysis import stats, transferability_scores
from bench.analysis.report import write_report
from bench.cli import main
from bench.data.base import DatasetSpec

IMAGE = [{"name": "mobilenetv2_100", "input_size": 32}, {"name": "tf_efficientnet_lite0", "input_size": 32}]


class Untouchable(list):
    """Test items that fail the test if anything reads them."""

    def __getitem__(self, index):
        raise AssertionError("the test split was read")

    def __iter__(self):
        raise AssertionError("the test split was read")


@pytest.fixture
def no_test_items(monkeypatch):
    """Datasets load as usual, with test items that must never be read."""
    load = DatasetSpec.load

    def guarded(self):
        ds = load(self)
        return dataclasses.replace(ds, test_items=Untouchable(ds.test_items))

    monkeypatch.setattr(DatasetSpec, "load", guarded)


def _exp(**overrides) -> config.Experiment:
    spec = tiny_experiment(backbones=IMAGE, budgets=[3], strategies=["feature_extraction", "finetune"])
    return config.parse({**spec, **overrides})


def test_scores_read_only_the_training_examples_and_use_the_source_classifier(no_test_items):
    exp = _exp()
    rows = transferability_scores.score_experiment(exp)
    assert len(rows) == 2 * exp.seeds.min  # a row per backbone and seed
    assert (rows.n_train == 30).all() and (rows.skipped == "").all()
    assert rows[transferability_scores.SCORES].notna().all().all()  # both have an ImageNet head: LEEP and NCE too
    assert rows.leep.lt(0).all() and rows.nce.le(0).all()  # log-likelihoods and negative entropies
    on_disk = transferability_scores.read(paths.experiment_dir("tiny") / transferability_scores.FILE)
    assert on_disk.key.tolist() == rows.key.tolist() and rows.key.nunique() == len(rows)


def test_rows_are_reused_and_a_changed_split_is_scored_anew(monkeypatch):
    exp = _exp()
    first = transferability_scores.score_experiment(exp)
    real = transferability_scores.score_split
    monkeypatch.setattr(
        transferability_scores, "score_split", lambda *a, **k: pytest.fail("a finished row was scored again")
    )
    pd.testing.assert_frame_equal(transferability_scores.score_experiment(exp), first)
    monkeypatch.setattr(transferability_scores, "score_split", real)
    wider = transferability_scores.score_experiment(_exp(budgets=[3, 4]))
    assert sorted(wider.budget.unique()) == ["3", "4"]
    pd.testing.assert_frame_equal(wider[wider.budget == "3"].reset_index(drop=True), first)


def test_text_backbones_skip_the_scores_that_need_a_source_classifier():
    spec = tiny_experiment(
        backbones=[{"name": "minilm_l6", "max_length": 32}], datasets=["sms_spam"], budgets=[4], seeds=1
    )
    rows = transferability_scores.score_experiment(config.parse(spec))
    assert rows.leep.isna().all() and rows.nce.isna().all()
    assert rows.logme.notna().all() and rows.reg_h_score.notna().all()
    assert "needs the backbone's source classifier" in rows.skipped.iloc[0]


def test_bench_rank_prints_the_backbones_best_first(tmp_path, capsys):
    like = tmp_path / "like.yaml"
    like.write_text(yaml.safe_dump(tiny_experiment(backbones=IMAGE)))
    args = ["rank", "mobilenetv2_100", "tf_efficientnet_lite0", "--dataset", "cifar10", "--budget", "3"]
    assert main([*args, "--seeds", "2", "--like", str(like)]) == 0
    out = capsys.readouterr().out
    assert "cifar10, 3 examples per class" in out and "30 training examples per split" in out
    table = [line for line in out.splitlines() if "mobilenetv2_100" in line or "tf_efficientnet_lite0" in line]
    assert len(table) == 2 and all("±" in line for line in table)
    exp = config.parse({**tiny_experiment(backbones=IMAGE), "budgets": [3], "seeds": 2})
    best = transferability_scores.per_backbone(
        transferability_scores.score_groups(exp, [(bb, "cifar10", 3) for bb in exp.backbones])
    )
    expected = best.sort_values("logme", ascending=False).backbone.tolist()
    assert [next(b for b in expected if b in line) for line in table] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rank", "resnet_nowhere", "--dataset", "cifar10"], "resnet_nowhere"),
        (["rank", "minilm_l6", "--dataset", "cifar10"], "minilm_l6 cannot read image data (cifar10)"),
        (["rank", "mobilenetv2_100", "--dataset", "cifar10", "--budget", "ten"], "--budget 'ten'"),
    ],
)
def test_bench_rank_refuses_what_it_cannot_score(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err


def _records(accuracy: dict[str, dict[str, float]]) -> list[dict]:
    """Constructed cells at one dataset and budget: accuracy[strategy][backbone] at every one of 3 seeds."""
    return [
        {
            "modality": "image",
            "dataset": "cifar10",
            "backbone": backbone,
            "budget": 5,
            "strategy": strategy,
            "best_hp": {"lr": 0.01},
            "cell_key": f"{strategy}-{backbone}",
            "trials_complete": 2,
            "trials_pruned": 0,
            "seconds": 1.0,
            "seeds": [
                {"seed": s, "test_acc": acc + 0.01 * s, "test_macro_f1": acc, "train_counts": {"0": 5, "1": 5}}
                for s in range(3)
            ],
        }
        for strategy, by_backbone in accuracy.items()
        for backbone, acc in by_backbone.items()
    ]


def test_report_sets_scores_against_outcomes_with_three_backbones(results_root):
    backbones = ["a", "b", "c"]
    records = _records(
        {
            "feature_extraction": dict(zip(backbones, [0.5, 0.6, 0.7], strict=True)),
            "finetune": dict(zip(backbones, [0.55, 0.65, 0.8], strict=True)),
            "l2sp": dict(zip(backbones, [0.54, 0.66, 0.79], strict=True)),
        }
    )
    rows = pd.DataFrame(
        {
            "modality": "image",
            "dataset": "cifar10",
            "backbone": np.repeat(backbones, 3),
            "budget": "5",
            "seed": np.tile(range(3), 3),
            "n_train": 10,
            **{s: np.repeat([1.0, 2.0, 3.0], 3) for s in transferability_scores.SCORES},
            "skipped": "",
            "key": [str(i) for i in range(9)],
        }
    )
    rows["h_score"] = np.repeat([3.0, 2.0, 1.0], 3)  # one score that orders them backwards
    report, _ = write_report("constructed", records, scores=rows)
    text = report.read_text()
    assert "| cifar10 | 5 | logme | 3 | +1.00 (0.333) | +1.00 (0.333) | +1.00 (0.333) | +1.00 (0.333) |" in text
    assert "| cifar10 | 5 | h_score | 3 | -1.00 (0.333) | -1.00 (0.333) | -1.00 (0.333) | -1.00 (0.333) |" in text
    assert "| all | all | logme | 3 | +1.00 (0.333) |" in text  # pooled over the one group: the same
    assert "Too few backbones" not in text
    assert "| cifar10 | 5 | c | 3.000 | 3.000 | 3.000 | 1.000 | 3.000 | 71.0 | 81.0 | finetune |" in text
    for score in transferability_scores.SCORES:
        assert (report.parent / f"scores_{score}.png").stat().st_size > 5000 and f"scores_{score}.png" in text
    assert "| cifar10 | 5 | finetune |" in text.split("## Verdicts")[1]  # the best at this dataset and budget
    assert "Friedman's χ² = " in text and "critical_difference.png" in text
    friedman = stats.friedman(stats.cells(records))
    assert f"p = {friedman['p_value']:.3g}" in text


def test_report_says_plainly_when_there_are_too_few_backbones(results_root):
    records = _records({"feature_extraction": {"a": 0.5, "b": 0.6}, "finetune": {"a": 0.55, "b": 0.7}})
    rows = pd.DataFrame(
        {
            "modality": "image",
            "dataset": "cifar10",
            "backbone": ["a", "b"],
            "budget": "5",
            "seed": 0,
            "n_train": 10,
            **{s: [1.0, 2.0] for s in transferability_scores.SCORES},
            "skipped": "",
            "key": ["0", "1"],
        }
    )
    report = write_report("constructed", records, scores=rows)[0]
    text = report.read_text()
    assert "Too few backbones to conclude anything (fewer than 3; how many in brackets): cifar10 at 5 (2)." in text
    assert "Kendall" not in text and not list(report.parent.glob("scores_*.png"))  # no correlation, no plot
    friedman = text.split("## Strategies across the matrix: Friedman")[1]
    assert "_Not computed: " in friedman  # 2 strategies: no Friedman test
