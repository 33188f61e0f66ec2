"""Statistics on constructed results with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench import stats


def _record(strategy, accs, budget=10, dataset="d", backbone="b", per_class=None):
    per_class = per_class or (budget if isinstance(budget, int) else 100)
    return {
        "modality": "image",
        "dataset": dataset,
        "backbone": backbone,
        "budget": budget,
        "strategy": strategy,
        "seeds": [
            {"seed": i, "test_acc": a, "test_macro_f1": a, "train_counts": {"0": per_class, "1": per_class}}
            for i, a in enumerate(accs)
        ],
    }


def test_ci_is_the_t_interval():
    mean, low, high = stats.mean_ci95([0.5, 0.6, 0.7])
    half = scipy_stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert mean == pytest.approx(0.6) and low == pytest.approx(0.6 - half) and high == pytest.approx(0.6 + half)
    assert math.isnan(stats.mean_ci95([0.5])[1])


def test_paired_p_value_equals_scipys():
    a, b = [0.61, 0.64, 0.60, 0.66], [0.50, 0.55, 0.52, 0.51]
    g = stats.paired_gain(a, b)
    assert g["p_value"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert g["gain"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert g["gain_ci_low"] < g["gain"] < g["gain_ci_high"]


def test_gains_pair_by_seed_and_flag_negative_transfer():
    records = [
        _record("scratch", [0.5, 0.6, 0.7]),
        _record("finetune", [0.6, 0.7, 0.8]),
        _record("l2sp", [0.45, 0.5, 0.65]),
    ]
    g = stats.gains_over_scratch(records).set_index("strategy")
    assert g.loc["finetune", "gain"] == pytest.approx(0.1) and not g.loc["finetune", "negative_transfer"]
    assert math.isnan(g.loc["finetune", "p_value"])  # identical differences: no variance, no test
    assert g.loc["l2sp", "negative_transfer"] and g.loc["l2sp", "gain"] == pytest.approx(-0.2 / 3)


def test_a_strategy_that_wins_everywhere_ranks_first_and_wins_every_pair():
    records = []
    for budget in (10, 100):
        for ds in ("x", "y"):
            records += [
                _record("best", [0.9, 0.91], budget, ds),
                _record("mid", [0.7, 0.72], budget, ds),
                _record("scratch", [0.3, 0.35], budget, ds),
            ]
    table = stats.cells(records)
    r = stats.ranks(table)
    assert r.strategy.tolist() == ["best", "mid", "scratch"] and r.mean_rank.tolist() == [1.0, 2.0, 3.0]
    w = stats.win_rates(table)
    assert w.loc["best", "mid"] == 1.0 and w.loc["mid", "best"] == 0.0 and w.loc["mid", "scratch"] == 1.0


def test_ties_share_a_rank_and_count_half_a_win():
    table = stats.cells([_record("a", [0.5]), _record("b", [0.5])])
    assert stats.ranks(table).mean_rank.tolist() == [1.5, 1.5]
    assert stats.win_rates(table).loc["a", "b"] == 0.5


def test_data_equivalence_interpolates_in_log_budget():
    assert stats.data_equivalence([10, 100], [0.2, 0.4], 0.3) == ("=", pytest.approx(math.sqrt(10 * 100)))
    assert stats.data_equivalence([100, 10, 1000], [0.4, 0.2, 0.6], 0.6) == ("=", pytest.approx(1000))
    assert stats.data_equivalence([10, 100], [0.5, 0.6], 0.4) == ("<=", 10)
    assert stats.data_equivalence([10, 100], [0.2, 0.4], 0.7) == (">", 100)


def test_all_budget_becomes_the_real_examples_per_class():
    table = stats.cells([_record("a", [0.5], budget="all", per_class=437)])
    assert table.per_class.iloc[0] == 437 and table.budget.iloc[0] == "all"
