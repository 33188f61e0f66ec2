"""Statistics on constructed results with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
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


def _runs(record, val, steps, kept):
    for s, v, n, k in zip(record["seeds"], val, steps, kept, strict=True):
        s.update(val_acc=v, steps=n, best_step=k)
    return record


def test_below_probe_flags_strategies_more_than_5_points_under_the_probe_with_the_measured_cause():
    probe = _runs(_record("feature_extraction", [0.6, 0.6, 0.6]), [0.6, 0.6, 0.6], [0, 0, 0], [0, 0, 0])
    records = [
        probe,
        _record("scratch", [0.1, 0.1, 0.1]),  # the baseline is compared with scratch, never with the probe
        _runs(_record("lp_ft", [0.58, 0.57, 0.59]), [0.6, 0.6, 0.6], [40, 40, 40], [0, 0, 0]),  # within 5 points
        _runs(_record("finetune", [0.4, 0.45, 0.5]), [0.5, 0.4, 0.45], [150, 150, 150], [150, 150, 150]),
        _runs(_record("l2sp", [0.5, 0.5, 0.52]), [0.7, 0.6, 0.65], [60, 70, 80], [20, 30, 40]),
        _runs(_record("bitfit", [0.5, 0.5, 0.52]), [0.4, 0.5, 0.45], [60, 70, 80], [20, 30, 40]),
        _runs(_record("lora", [0.5, 0.5, 0.52], dataset="other"), [0.4] * 3, [60] * 3, [20] * 3),  # no probe there
    ]
    below = stats.below_probe(records).set_index("strategy")
    assert set(below.index) == {"finetune", "l2sp", "bitfit"}
    assert below.loc["finetune", "gap"] == pytest.approx(-0.15) and below.loc["finetune", "gap_ci_high"] < 0
    assert below.loc["finetune", "cause"] == "still improving"  # kept its last step: the cap cut it short
    assert below.loc["l2sp", "cause"] == "validation misled"  # validated above the probe, tested below it
    assert below.loc["bitfit", "cause"] == "fell after step 30"
    assert (below.loc["bitfit", "val_acc"], below.loc["bitfit", "probe_val_acc"]) == (0.45, 0.6)


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


def _table(values, strategies=None):
    """A cells-like table: values[block][strategy] as acc_mean, NaN = that strategy did not run in the block."""
    values = np.asarray(values, dtype=float)
    strategies = strategies or [f"s{j}" for j in range(values.shape[1])]
    rows = [
        {"dataset": f"d{i}", "backbone": "b", "budget": "10", "strategy": s, "acc_mean": v}
        for i, block in enumerate(values)
        for s, v in zip(strategies, block, strict=True)
        if not np.isnan(v)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("ties", [False, True])
def test_friedman_equals_scipys_on_random_tables(ties):
    rng = np.random.default_rng(3)
    for _ in range(30):
        k, n = int(rng.integers(3, 7)), int(rng.integers(2, 12))
        values = rng.uniform(0.3, 0.9, (n, k))
        if ties:
            values = np.round(values, 1)  # few distinct values: ties in most blocks
        f = stats.friedman(_table(values))
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = scipy_stats.friedmanchisquare(*values.T)
        if (values == values[:, :1]).all():  # every block all tied: scipy's is NaN, ours says so
            assert np.isnan(expected.statistic) and math.isnan(f["chi2"]) and "tied" in f["reason"]
            continue
        assert f["reason"] is None and (f["k"], f["n_blocks"]) == (k, n)
        assert f["chi2"] == pytest.approx(expected.statistic) and f["p_value"] == pytest.approx(expected.pvalue)
        ranks = scipy_stats.rankdata(-values, axis=1).mean(axis=0)
        np.testing.assert_allclose(f["mean_ranks"].loc[[f"s{j}" for j in range(k)]], ranks)
        assert f["mean_ranks"].is_monotonic_increasing


def test_friedman_iman_davenport_by_hand():
    # rankings per block (1 = best): (1,2,3) (1,2,3) (1,3,2) (2,1,3): mean ranks 1.25, 2, 2.75
    values = [[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.9, 0.7, 0.8], [0.8, 0.9, 0.7]]
    f = stats.friedman(_table(values, ["a", "b", "c"]))
    assert f["mean_ranks"].to_dict() == {"a": 1.25, "b": 2.0, "c": 2.75}
    # chi2 = 12 N / (k (k + 1)) (sum R^2 - k (k + 1)^2 / 4) = 4 * (13.125 - 12) = 4.5
    assert f["chi2"] == pytest.approx(4.5) and f["p_value"] == pytest.approx(math.exp(-4.5 / 2))
    # F = (N - 1) chi2 / (N (k - 1) - chi2) = 3 * 4.5 / 3.5 on (2, 6) df: sf = (1 + F / 3)^-3 = (7 / 16)^3
    assert f["iman_davenport_f"] == pytest.approx(27 / 7) and (f["df1"], f["df2"]) == (2, 6)
    assert f["iman_davenport_p"] == pytest.approx(343 / 4096)
    assert f["iman_davenport_p"] < f["p_value"]  # chi2 is the conservative one


def test_friedman_uses_only_complete_blocks_and_says_when_it_cannot():
    values = [[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.9, math.nan, 0.8], [0.8, 0.9, 0.7]]
    f = stats.friedman(_table(values))
    assert (f["n_blocks"], f["n_blocks_total"]) == (3, 4)
    complete = np.array(values)[[0, 1, 3]]
    assert f["chi2"] == pytest.approx(scipy_stats.friedmanchisquare(*complete.T).statistic)
    same = stats.friedman(_table([[0.9, 0.8, 0.7]] * 3))  # every block agrees: F is infinite
    assert same["chi2"] == pytest.approx(6.0) and same["iman_davenport_f"] == math.inf and same["iman_davenport_p"] == 0
    two = stats.friedman(_table([[0.9, 0.8]] * 3))
    assert two["k"] == 2 and math.isnan(two["chi2"]) and "at least 3" in two["reason"]
    one = stats.friedman(_table([[0.9, 0.8, 0.7], [0.9, math.nan, 0.7]]))
    assert one["n_blocks"] == 1 and math.isnan(one["iman_davenport_p"]) and "at least 2" in one["reason"]
    tied = stats.friedman(_table([[0.5, 0.5, 0.5]] * 3))
    assert math.isnan(tied["chi2"]) and "tied" in tied["reason"]
    assert stats.friedman(_table(np.zeros((0, 3))))["reason"] is not None


def test_nemenyi_cd_matches_demsars_table():
    q = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]  # Demšar 2006, Table 5(a), alpha 0.05
    for k, q_k in zip(range(2, 11), q, strict=True):
        assert stats.nemenyi_cd(k, 6) / math.sqrt(k * (k + 1) / 36) == pytest.approx(q_k, abs=1e-3)
    assert stats.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=5e-3)  # Demšar's worked example
    assert stats.nemenyi_cd(4, 14, alpha=0.10) < stats.nemenyi_cd(4, 14)
    with pytest.raises(ValueError):
        stats.nemenyi_cd(1, 5)


def test_cd_groups_are_the_maximal_sets_within_the_cd():
    r = pd.Series({"e": 4.0, "c": 2.4, "a": 1.0, "d": 3.9, "b": 1.5})
    # a-b within 1, b-c within 1, c alone is inside b-c, d-e within 1
    assert stats.cd_groups(r, 1.0) == [["a", "b"], ["b", "c"], ["d", "e"]]
    assert stats.cd_groups(r, 10.0) == [["a", "b", "c", "d", "e"]]
    assert stats.cd_groups(r, 0.05) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert stats.cd_groups(pd.Series({"x": 1.0, "y": 2.0}), 1.0) == [["x"], ["y"]]  # a difference of CD is one
    assert stats.cd_groups(pd.Series({"x": 1.0, "y": 2.0, "z": math.nan}), 1.5) == [["x", "y"]]


def _pairs_records(strategy, accs_by_backbone, dataset="d", budget=10):
    return [_record(strategy, accs, budget, dataset, backbone) for backbone, accs in accs_by_backbone.items()]


def test_verdicts_keep_the_tied_strategy_and_drop_the_worse():
    best = {"b1": [0.90, 0.88, 0.91], "b2": [0.85, 0.87, 0.86]}
    tie_offsets = [0.01, -0.01, 0.02, -0.015, 0.005, -0.004]  # mean 0.001 below best, noisy: not significant
    worse_offsets = [0.2, 0.21, 0.19, 0.2, 0.22, 0.18]
    flat = [a for accs in best.values() for a in accs]
    tied = np.subtract(flat, tie_offsets).reshape(2, 3)
    worse = np.subtract(flat, worse_offsets).reshape(2, 3)
    records = []
    for dataset, budget in [("y", "all"), ("y", 10), ("y", 5), ("x", 10)]:
        records += _pairs_records("best", best, dataset, budget)
        records += _pairs_records("tied", {"b1": list(tied[0]), "b2": list(tied[1])}, dataset, budget)
        records += _pairs_records("worse", {"b1": list(worse[0]), "b2": list(worse[1])}, dataset, budget)
    v = stats.verdicts(records)
    assert list(zip(v.dataset, v.budget, strict=True)) == [("x", "10"), ("y", "5"), ("y", "10"), ("y", "all")]
    row = v.iloc[0]
    assert row.best == "best" and row.pairs == 6 and row.strategies == 3
    assert (row.best_mean, row.best_ci_low, row.best_ci_high) == pytest.approx(stats.accuracy_ci95(flat))
    assert row.not_worse == ["best", "tied"] and row.worse == ["worse"]
    p = [scipy_stats.ttest_rel(tied.ravel(), flat).pvalue, scipy_stats.ttest_rel(worse.ravel(), flat).pvalue]
    assert p[0] > 0.5 and p[1] < 1e-4
    assert [row.p_holm["tied"], row.p_holm["worse"]] == pytest.approx(list(stats.holm(p)))


def test_verdicts_pair_by_backbone_and_seed_and_ignore_a_better_significant_difference():
    # "late" ran only at b1, where it is better than the best: significantly different but not worse
    best = {"b1": [0.60, 0.62, 0.61], "b2": [0.95, 0.94, 0.96]}
    records = _pairs_records("best", best) + _pairs_records("late", {"b1": [0.70, 0.73, 0.71]})
    row = stats.verdicts(records).iloc[0]
    assert row.best == "best" and row.pairs == 6 and row.p_holm["late"] < 0.05
    assert row.not_worse == ["best", "late"] and row.worse == []
    alone = stats.verdicts(_pairs_records("only", best)).iloc[0]
    assert alone.not_worse == ["only"] and alone.p_holm == {}


def _points(groups):
    """Rows of (dataset, budget, backbone, score, acc) from {dataset: (scores, accs)}."""
    rows = [
        {"dataset": d, "budget": 10, "backbone": f"m{i}", "score": s, "acc": a}
        for d, (scores, accs) in groups.items()
        for i, (s, a) in enumerate(zip(scores, accs, strict=True))
    ]
    return pd.DataFrame(rows)


def test_rank_correlations_perfect_and_reversed_agreement():
    pts = _points({"up": ([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]), "down": ([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1])})
    out = stats.rank_correlations(pts, ["score"], ["acc"], ["dataset", "budget"]).set_index("dataset")
    assert out.loc["up", "tau"] == pytest.approx(1) and out.loc["down", "tau"] == pytest.approx(-1)
    assert out.loc["up", "weighted_tau"] == pytest.approx(1) and out.loc["down", "weighted_tau"] == pytest.approx(-1)
    # two-sided exact permutation p-value: the identity and the reversal of 4! = 24 reach |tau| = 1
    assert out.loc["up", "weighted_tau_p"] == pytest.approx(2 / 24) and out.loc["down", "weighted_tau_p"] == 2 / 24
    assert out.loc["up", "tau_p"] == pytest.approx(scipy_stats.kendalltau([1, 2, 3, 4], [1, 2, 3, 4]).pvalue)
    assert out.loc["up", "n"] == 4 and out.loc["up", "note"] == ""
    assert out.loc["all", "tau"] == pytest.approx(0) and out.loc["all", "groups"] == 2  # +6 and -6 of 12 pairs


def test_pooled_tau_ignores_scale_across_groups_and_skips_small_groups():
    # within each group the score orders the backbones exactly; across groups it is the wrong way round
    pts = _points(
        {
            "low": ([1, 2, 3, 4], [0.6, 0.7, 0.8, 0.9]),
            "high": ([1001, 1002, 1003, 1004], [0.1, 0.2, 0.3, 0.4]),
            "tiny": ([5, 6], [0.9, 0.8]),  # reversed, but only 2 backbones: no conclusion, not pooled
        }
    )
    assert scipy_stats.kendalltau(pts.score, pts.acc).statistic < 0  # pooling the raw rows would say the opposite
    out = stats.rank_correlations(pts, ["score"], ["acc"], ["dataset", "budget"])
    pooled = out[out.dataset == "all"].iloc[0]
    assert pooled.budget == "all" and pooled.tau == pytest.approx(1) and pooled.weighted_tau == pytest.approx(1)
    assert (pooled.n, pooled.groups, pooled.pairs) == (8, 2, 12)
    # permuting within groups: 4! * 4! = 576 combinations, of which both-identity and both-reversed reach |tau| = 1
    assert pooled.tau_p == pytest.approx(2 / 576) and pooled.weighted_tau_p == pytest.approx(2 / 576)
    tiny = out[out.dataset == "tiny"].iloc[0]
    assert tiny.n == 2 and tiny.note == stats.FEW_BACKBONES == "fewer than 3 backbones: no conclusion"
    assert np.isnan(tiny[["tau", "tau_p", "weighted_tau", "weighted_tau_p"]].astype(float)).all()
    only_small = stats.rank_correlations(pts[pts.dataset == "tiny"], ["score"], ["acc"], ["dataset"])
    assert only_small.note.tolist() == [stats.FEW_BACKBONES] * 2 and np.isnan(only_small.tau).all()


def test_pooled_tau_of_one_group_is_kendalls_tau_b_with_its_exact_p_value():
    rng = np.random.default_rng(4)
    x = rng.normal(size=6)
    y = x + rng.normal(size=6)
    out = stats.rank_correlations(pd.DataFrame({"g": "a", "s": x, "acc": y}), ["s"], ["acc"], ["g"])
    expected = scipy_stats.kendalltau(x, y)  # no ties, n = 6: scipy's p is exact too
    assert expected.statistic != 0
    assert out.tau.tolist() == pytest.approx([expected.statistic] * 2)
    assert out.tau_p.tolist() == pytest.approx([expected.pvalue] * 2)
    assert out.weighted_tau_p.iloc[0] == pytest.approx(out.weighted_tau_p.iloc[1])
    ties = pd.DataFrame({"g": "a", "s": [1, 1, 2, 3, 3], "acc": [0.1, 0.2, 0.2, 0.4, 0.3]})
    pooled = stats.rank_correlations(ties, ["s"], ["acc"], ["g"]).iloc[1]
    assert pooled.tau == pytest.approx(scipy_stats.kendalltau(ties.s, ties.acc).statistic)  # tau-b, not tau-a


def test_weighted_tau_p_from_random_permutations_beyond_seven_backbones():
    x = np.arange(9.0)
    pts = pd.DataFrame({"g": "a", "s": x, "acc": x / 10, "noisy": np.r_[0.3, 0.1, 0.2, 0.5, 0.4, 0.0, 0.8, 0.6, 0.7]})
    out = stats.rank_correlations(pts, ["s"], ["acc", "noisy"], ["g"])
    perfect = out[(out.g == "a") & (out.outcome == "acc")].iloc[0]
    # only the identity and the reversal of 9! reach |1|: (1 + hits) / 2001 with hits 0 or 1 (this seed draws it)
    assert 1 / 2001 <= perfect.weighted_tau_p <= 2 / 2001 + 1e-12
    again = stats.rank_correlations(pts, ["s"], ["acc", "noisy"], ["g"])
    pd.testing.assert_frame_equal(out, again)  # fixed seed
    noisy = out[(out.g == "a") & (out.outcome == "noisy")].iloc[0]
    assert 0 < noisy.weighted_tau < 1 and 1 / 2001 < noisy.weighted_tau_p < 1
    # the pooled random-permutation p of tau is close to scipy's exact one for the one group
    pooled = out[(out.g == "all") & (out.outcome == "noisy")].iloc[0]
    assert pooled.tau_p == pytest.approx(scipy_stats.kendalltau(x, pts.noisy).pvalue, abs=0.03)


def _predicting(strategy, predicted_per_seed, budget=10):
    """A record whose seeds stored these test predictions (true class 0 everywhere)."""
    record = _record(strategy, [np.mean(np.equal(p, 0)) for p in predicted_per_seed], budget=budget)
    record["cell_key"] = f"{strategy}-{budget}"
    for seed, predicted in zip(record["seeds"], predicted_per_seed, strict=True):
        seed["predictions"] = {"test_index": list(range(len(predicted))), "predicted": predicted, "true": [0] * 4}
    return record


def test_strategies_with_the_same_predictions_at_every_seed_are_one_result():
    records = [
        _predicting("finetune", [[0, 1, 0, 0], [0, 0, 1, 1]]),
        _predicting("l2", [[0, 1, 0, 0], [0, 0, 1, 1]]),  # a copy of finetune
        _predicting("l1", [[0, 1, 0, 0], [0, 0, 1, 0]]),  # the same at seed 0 only: a result of its own
        _predicting("l2sp", [[0, 1, 0, 0], [0, 0, 1, 1]], budget=20),  # another budget: never a copy
        _predicting("l1sp", [[0, 1, 0, 0], [0, 0, 1, 0]]),  # a copy of l1, the first with its predictions
    ]
    assert stats.identical_to(records) == {"l2-10": "finetune", "l1sp-10": "l1"}
    assert [r["strategy"] for r in stats.distinct(records)] == ["finetune", "l1", "l2sp"]
    older = _record("partial", [0.5, 0.5])  # a version that stored no predictions: never flagged
    older["cell_key"] = "partial-10"
    assert stats.identical_to([*records, older]) == stats.identical_to(records)
