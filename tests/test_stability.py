"""Two runs of one experiment compared cell by cell and verdict by verdict (`bench stability`), on constructed
records: nothing is trained."""

from __future__ import annotations

import json

import pytest

from bench import cli
from bench.analysis import stability


def _record(strategy: str, accs: list[float], budget: int = 10, dataset: str = "d") -> dict:
    return {
        "modality": "image",
        "dataset": dataset,
        "backbone": "b",
        "budget": budget,
        "strategy": strategy,
        "seeds": [
            {"seed": i, "test_acc": a, "test_macro_f1": a, "train_counts": {"0": budget, "1": budget}}
            for i, a in enumerate(accs)
        ],
    }


FIRST = [
    _record("finetune", [0.60, 0.64, 0.62]),
    _record("l2sp", [0.59, 0.65, 0.62]),
    _record("scratch", [0.20, 0.22, 0.21]),
    _record("finetune", [0.80, 0.82, 0.81], budget=100),
    _record("scratch", [0.30, 0.31, 0.32], budget=100),
]


def _write(folder, records):
    (folder / "cells").mkdir(parents=True)
    for i, r in enumerate(records):
        (folder / "cells" / f"{i:016x}.json").write_text(json.dumps(r))
    return folder


def test_a_cell_holds_when_the_second_mean_lies_in_the_first_interval():
    second = [
        _record("finetune", [0.61, 0.65, 0.63]),  # +1 point: inside finetune's interval
        _record("l2sp", [0.63, 0.64, 0.66]),  # now ahead of finetune, but not significantly: the verdict holds
        _record("scratch", [0.30, 0.31, 0.32]),  # +10 points: outside its interval
        _record("finetune", [0.81, 0.82, 0.83], budget=100),
        _record("scratch", [0.31, 0.30, 0.32], budget=100),
    ]
    found = stability.compare(FIRST, second)
    by_cell = found.cells.set_index(["budget", "strategy"])
    assert by_cell.holds.to_dict() == {
        ("10", "finetune"): True,
        ("10", "l2sp"): True,
        ("10", "scratch"): False,
        ("100", "finetune"): True,
        ("100", "scratch"): True,
    }
    assert found.cells_holding == pytest.approx(0.8)
    assert by_cell.loc[("10", "scratch"), "moved"] == pytest.approx(0.1)
    verdicts = found.verdicts.set_index(["budget", "strategy"])
    assert tuple(verdicts.loc[("10", "finetune"), ["first", "second"]]) == ("best", "undecided")
    assert tuple(verdicts.loc[("10", "l2sp"), ["first", "second"]]) == ("undecided", "best")
    assert verdicts.loc[("10", "scratch"), "first"] == "worse"
    assert verdicts.holds.all() and len(verdicts) == 5


def test_a_verdict_breaks_when_one_runs_best_is_significantly_worse_in_the_other():
    second = [
        _record("finetune", [0.40, 0.43, 0.41]),  # now significantly below l2sp
        _record("l2sp", [0.59, 0.65, 0.62]),
        _record("scratch", [0.20, 0.22, 0.21]),
    ]
    found = stability.compare(FIRST, second)
    assert len(found.cells) == 3  # the budget only the first run finished is left out
    verdict = found.verdicts.set_index(["budget", "strategy"]).loc[("10", "finetune")]
    assert (verdict["first"], verdict["second"]) == ("best", "worse") and not verdict.holds
    assert found.verdicts.holds.sum() == 2  # l2sp (undecided, then best) and scratch (worse in both)


def test_bench_stability_prints_the_figures_and_what_moved(tmp_path, capsys):
    second = [dict(r) for r in FIRST]
    second[2] = _record("scratch", [0.30, 0.31, 0.32])
    code = cli.main(["stability", str(_write(tmp_path / "a", FIRST)), str(_write(tmp_path / "b", second))])
    out = capsys.readouterr().out
    assert code == 0
    assert "4 of 5 cells (80 %) hold" in out and "5 of 5 verdicts hold (5 the same word)" in out
    assert "+10.0" in out and "21.0 [" in out  # the cell that moved, with the first run's interval


def test_bench_stability_says_what_is_wrong_with_its_folders(tmp_path, capsys):
    assert cli.main(["stability", str(tmp_path / "nothing"), str(tmp_path / "nothing")]) == 2
    assert "no finished cells" in capsys.readouterr().err
    twice = _write(tmp_path / "twice", [FIRST[0], FIRST[0]])
    assert cli.main(["stability", str(twice), str(twice)]) == 2
    err = capsys.readouterr().err
    assert "two finished runs of d/b/10/finetune" in err and "Traceback" not in err
