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


def _logit(p):
    return np.log(p / (1 - p))


def _logistic(z):
    return 1 / (1 + np.exp(-z))


def test_difference_ci_is_the_plain_t_interval():
    mean, low, high = stats.mean_ci95([-0.1, 0.05, 0.2])
    half = scipy_stats.t.ppf(0.975, 2) * 0.15 / math.sqrt(3)
    assert mean == pytest.approx(0.05) and low == pytest.approx(0.05 - half) and high == pytest.approx(0.05 + half)
    assert math.isnan(stats.mean_ci95([0.5])[1])


def test_accuracy_ci_is_the_t_interval_on_the_logit_scale():
    accs = np.array([0.5, 0.6, 0.7])
    z = _logit(accs)
    half = scipy_stats.t.ppf(0.975, 2) * z.std(ddof=1) / math.sqrt(3)
    mean, low, high = stats.accuracy_ci95(accs)
    assert mean == pytest.approx(0.6)  # the arithmetic mean, not the back-transformed one
    assert low == pytest.approx(_logistic(z.mean() - half)) and high == pytest.approx(_logistic(z.mean() + half))
    # it differs from the plain interval of the accuracies: the old one is not what is returned
    assert low != pytest.approx(stats.mean_ci95(accs)[1], abs=1e-3)


def test_accuracy_ci_uses_the_empirical_logit_with_the_test_size():
    accs, n = np.array([0.0, 0.02, 0.04]), 50
    z = np.log((accs * n + 0.5) / (n - accs * n + 0.5))  # log((k + 0.5) / (n - k + 0.5))
    half = scipy_stats.t.ppf(0.975, 2) * z.std(ddof=1) / math.sqrt(3)
    _, low, high = stats.accuracy_ci95(accs, n_test=n)
    assert low == pytest.approx(_logistic(z.mean() - half)) and high == pytest.approx(_logistic(z.mean() + half))
    assert stats.accuracy_ci95(accs, n_test=[n] * 3) == stats.accuracy_ci95(accs, n_test=n)


def test_accuracy_ci_clamps_zero_and_one_without_the_test_size():
    z = _logit(np.array([1e-6, 1e-6, 0.1]))
    half = scipy_stats.t.ppf(0.975, 2) * z.std(ddof=1) / math.sqrt(3)
    _, low, high = stats.accuracy_ci95([0.0, 0.0, 0.1])
    assert low == pytest.approx(_logistic(z.mean() - half)) and high == pytest.approx(_logistic(z.mean() + half))


@pytest.mark.parametrize("n_test", [None, 20, 10_000])
@pytest.mark.parametrize(
    "accs", [[0.0, 0.0, 0.1], [1.0, 0.98, 1.0], [0.0, 1.0, 0.5], [0.0, 1.0], [0.001, 0.002, 0.0], [0.999, 1.0, 0.99]]
)
def test_accuracy_ci_of_extreme_cases_stays_in_the_unit_interval(accs, n_test):
    mean, low, high = stats.accuracy_ci95(accs, n_test)
    assert 0.0 <= low <= high <= 1.0 and low < high
    assert mean == pytest.approx(np.mean(accs))


@pytest.mark.parametrize("n_test", [None, 100])
@pytest.mark.parametrize("value", [0.0, 1.0, 0.37])
def test_identical_accuracies_give_the_point(value, n_test):
    assert stats.accuracy_ci95([value] * 3, n_test) == (value, value, value)
    mean, low, high = stats.accuracy_ci95([value], n_test)
    assert mean == value and math.isnan(low) and math.isnan(high)


def test_accuracy_ci_never_leaves_the_unit_interval_on_random_draws():
    rng = np.random.default_rng(0)
    plain_outside = 0
    for i in range(1000):
        k = int(rng.integers(2, 11))
        n = int(rng.integers(10, 5000))
        centre = rng.choice([rng.uniform(0, 0.05), rng.uniform(0.95, 1), rng.uniform(0, 1)])
        accs = np.clip(centre + rng.normal(0, rng.uniform(0.001, 0.2), k), 0, 1)
        accs = np.round(accs * n) / n  # what a test set of n examples can give, 0 and 1 included
        _, low, high = stats.accuracy_ci95(accs, n if i % 2 else None)
        assert 0.0 <= low <= high <= 1.0, (accs, n, low, high)
        _, plain_low, plain_high = stats.mean_ci95(accs)
        plain_outside += plain_low < 0 or plain_high > 1
    assert plain_outside > 100  # the draws do reach the cases the plain interval gets wrong


def test_accuracy_ci_contains_the_mean_in_typical_cases():
    rng = np.random.default_rng(1)
    for _ in range(1000):
        k, n = int(rng.integers(3, 11)), int(rng.integers(500, 10_000))
        accs = np.round(np.clip(rng.uniform(0.2, 0.95) + rng.normal(0, 0.02, k), 0, 1) * n) / n
        mean, low, high = stats.accuracy_ci95(accs, n)
        assert low < mean < high


def test_cells_take_the_test_size_from_the_confusion_matrix():
    record = _record("a", [1.0, 0.9, 1.0])
    for s in record["seeds"]:
        wrong = round(10 * (1 - s["test_acc"]))
        s["confusion_matrix"] = [[5, 0], [wrong, 5 - wrong]]  # 10 test examples
    row = stats.cells([record]).iloc[0]
    assert (row.acc_ci_low, row.acc_ci_high) == stats.accuracy_ci95([1.0, 0.9, 1.0], n_test=10)[1:]
    assert row.acc_ci_high < 1.0 and row.acc_ci_low > 0.0
    assert stats.n_test_examples(record["seeds"][0]) == 10 and stats.n_test_examples({"test_acc": 0.5}) is None
    # without the matrix the clamp is used, which is a different (wider) interval
    plain = stats.cells([_record("a", [1.0, 0.9, 1.0])]).iloc[0]
    assert plain.acc_ci_high > row.acc_ci_high


def test_holm_and_bh_match_hand_values():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.4, 0.01]), [0.8, 0.8, 0.03])  # capped and kept monotone
    np.testing.assert_allclose(stats.holm([0.6, 0.9]), [1.0, 1.0])
    np.testing.assert_allclose(stats.benjamini_hochberg([0.01, 0.02, 0.025]), [0.025] * 3)  # step-up minimum


def test_nan_p_values_stay_nan_and_are_not_counted():
    p = [0.01, math.nan, 0.04, 0.03, math.nan, 0.005]
    holm, bh = stats.holm(p), stats.benjamini_hochberg(p)
    assert np.isnan(holm[[1, 4]]).all() and np.isnan(bh[[1, 4]]).all()
    np.testing.assert_allclose(holm[[0, 2, 3, 5]], [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(bh[[0, 2, 3, 5]], [0.02, 0.04, 0.04, 0.02])
    assert stats.n_comparisons(p) == 4 and stats.n_comparisons([math.nan]) == 0
    assert np.isnan(stats.holm([math.nan])).all() and len(stats.holm([])) == 0


def test_bh_equals_scipys():
    if not hasattr(scipy_stats, "false_discovery_control"):
        pytest.skip("scipy without false_discovery_control")
    p = np.random.default_rng(2).uniform(0, 0.2, 40)
    np.testing.assert_allclose(stats.benjamini_hochberg(p), scipy_stats.false_discovery_control(p))


def test_gains_carry_adjusted_p_values_across_the_matrix():
    records = [
        _record("scratch", [0.5, 0.6, 0.7]),
        _record("finetune", [0.6, 0.7, 0.8]),  # identical differences: no p-value, no comparison
        _record("l2sp", [0.45, 0.5, 0.65]),
        _record("scratch", [0.3, 0.32, 0.35], dataset="e"),
        _record("finetune", [0.5, 0.55, 0.52], dataset="e"),
        _record("l2sp", [0.31, 0.33, 0.37], dataset="e"),
    ]
    g = stats.gains_over_scratch(records)
    cols = list(g.columns)
    assert cols[cols.index("p_value") + 1 : cols.index("p_value") + 3] == ["p_holm", "p_bh"]
    np.testing.assert_allclose(g.p_holm, stats.holm(g.p_value))
    np.testing.assert_allclose(g.p_bh, stats.benjamini_hochberg(g.p_value))
    assert stats.n_comparisons(g.p_value) == 3 and g.p_holm.isna().sum() == 1
    assert (g.significant == (g.p_holm < 0.05)).all()
    e = g.set_index(["dataset", "strategy"]).loc[("e", "finetune")]
    assert e.p_value < 0.05 and e.p_holm == pytest.approx(min(1, 3 * e.p_value))  # the smallest of 3: times 3


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
