"""Statistics on constructed results with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench.analysis import stats


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


def _with_predictions(record, correct_by_seed):
    """``record`` with per-example predictions: ``correct_by_seed[i]`` is seed i's list of right (1) or wrong (0)."""
    for s, right in zip(record["seeds"], correct_by_seed, strict=True):
        s["predictions"] = {
            "test_index": list(range(len(right))),
            "predicted": [0 if r else 1 for r in right],
            "true": [0] * len(right),
        }
        s["test_acc"] = float(np.mean(right))
    return record


def test_cells_count_seeds_and_test_examples_in_their_interval():
    rng = np.random.default_rng(0)
    right = (rng.random((3, 400)) < 0.7).astype(int)
    row = stats.cells([_with_predictions(_record("a", [0, 0, 0]), right)]).iloc[0]
    assert row.acc_mean == pytest.approx(right.mean())
    # three seeds that happen to agree closely: the test examples' error (about 2.3 points here) still counts
    assert row.acc_ci_low < right.mean() - 0.015 and row.acc_ci_high > right.mean() + 0.015
    assert 0 < row.acc_ci_low < row.acc_ci_high < 1
    alone = stats.cells([_record("a", [0.7, 0.7, 0.7])]).iloc[0]  # no predictions: seeds only, all the same
    assert alone.acc_ci_low == pytest.approx(0.7) and alone.acc_ci_high == pytest.approx(0.7)


def test_gains_pair_by_seed_and_test_example_and_give_verdicts():
    rng = np.random.default_rng(1)
    base = (rng.random((3, 300)) < 0.5).astype(int)
    better = np.where(rng.random((3, 300)) < 0.4, 1, base)  # right wherever scratch was, and on 40 % more
    records = [
        _with_predictions(_record("scratch", [0, 0, 0]), base),
        _with_predictions(_record("finetune", [0, 0, 0]), better),
        _with_predictions(_record("l2sp", [0, 0, 0]), 1 - better),  # worse than scratch
    ]
    g = stats.gains_over_scratch(records).set_index("strategy")
    assert g.loc["finetune", "gain"] == pytest.approx(better.mean() - base.mean())
    assert g.loc["finetune", "gain_verdict"] == "better" and g.loc["finetune", "p_improve"] == 1.0
    assert g.loc["l2sp", "gain_verdict"] == "worse" and g.loc["l2sp", "negative_transfer"]
    assert (g.seeds == 3).all() and (g.n_test == 300).all()
    assert (g.gain_ci_low < g.gain).all() and (g.gain < g.gain_ci_high).all()
    # the same comparison against any other strategy: finetune as the reference
    against = stats.against(records, "finetune").set_index("strategy")
    assert set(against.index) == {"scratch", "l2sp"} and (against.verdict == "worse").all()
    assert against.loc["scratch", "diff"] == pytest.approx(-g.loc["finetune", "gain"])


def test_identical_differences_at_every_seed_still_have_the_test_examples_error():
    # the reference's SMS Spam case: exactly 10 points below at all three seeds is no certainty on 30 examples
    base = np.ones((3, 30), dtype=int)
    lower = base.copy()
    lower[:, :3] = 0  # the same 3 examples wrong at every seed: -10.0 points each time
    records = [
        _with_predictions(_record("finetune", [0, 0, 0]), base),
        _with_predictions(_record("layerwise_lr", [0, 0, 0]), lower),
    ]
    row = stats.verdicts(records).set_index("strategy").loc["layerwise_lr"]
    assert row["diff"] == pytest.approx(-0.1) and row.ci_low < -0.2 and row.ci_high > -0.01
    assert row.verdict == "undecided"


def test_the_baselines_are_found_by_role_whatever_their_names(monkeypatch):
    """A researcher's own baselines (here ``from_zero`` and ``frozen``) take the places of scratch and the probe."""
    from bench.strategies import base

    roles = {"from_zero": base.Role.SCRATCH, "frozen": base.Role.PROBE}
    monkeypatch.setattr(base, "role_of", lambda name: roles.get(name, base.Role.STRATEGY))
    rng = np.random.default_rng(2)
    low = (rng.random((3, 200)) < 0.3).astype(int)
    high = np.where(rng.random((3, 200)) < 0.5, 1, low)
    records = [
        _with_predictions(_record("from_zero", [0, 0, 0]), low),
        _with_predictions(_record("frozen", [0, 0, 0]), high),
        _with_predictions(_record("finetune", [0, 0, 0]), 1 - high),
        _with_predictions(_record("scratch", [0, 0, 0]), high),  # an ordinary strategy under these roles
    ]
    assert stats.baseline(records, base.Role.SCRATCH) == "from_zero"
    gains = stats.gains_over_scratch(records).set_index("strategy")
    assert set(gains.index) == {"frozen", "finetune", "scratch"}
    assert gains.loc["frozen", "gain"] == pytest.approx(high.mean() - low.mean())
    kinds = {(c.kind, c.reference) for c in stats.contests(records)}  # what racing asks: the best, and scratch
    assert kinds == {(stats.BEST, "frozen"), (stats.SAME_CELL, "from_zero")}
    below = stats.below_probe(records, margin=0.0)
    assert set(below.strategy) == {"finetune"}  # against frozen; the scratch baseline is never compared with it


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


def test_verdicts_call_the_tied_strategy_undecided_and_the_far_one_worse():
    best = {"b1": [0.90, 0.88, 0.91], "b2": [0.85, 0.87, 0.86]}
    tie_offsets = [0.01, -0.01, 0.02, -0.015, 0.005, -0.004]  # mean 0.001 below best, noisy: not decided
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
    groups = list(dict.fromkeys(zip(v.dataset, v.budget, strict=True)))
    assert groups == [("x", "10"), ("y", "5"), ("y", "10"), ("y", "all")]
    first = v[(v.dataset == "x")].set_index("strategy")
    assert list(first.index) == ["best", "tied", "worse"]  # the best first, then by accuracy
    assert first.verdict.tolist() == ["best", "undecided", "worse"] and (first.runs == 6).all()
    assert first.loc["best", "acc"] == pytest.approx(np.mean(flat)) and first.loc["best", "diff"] == 0
    # without predictions the interval is the paired t-interval over the 6 (backbone, seed) runs
    d = np.asarray(worse_offsets) * -1
    half = scipy_stats.t.ppf(0.975, 5) * d.std(ddof=1) / math.sqrt(6)
    assert (first.loc["worse", "ci_low"], first.loc["worse", "ci_high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    assert first.loc["worse", "p_improve"] == 0.0 and 0 < first.loc["tied", "p_improve"] < 1


def test_verdicts_pair_by_backbone_and_seed_and_say_equivalent_inside_the_region():
    best = {"b1": [0.60, 0.62, 0.61], "b2": [0.95, 0.94, 0.96]}
    close = {"b1": [0.599, 0.618, 0.6095], "b2": [0.9495, 0.9405, 0.9595]}  # within a point, very steadily
    records = _pairs_records("best", best) + _pairs_records("close", close) + _pairs_records("late", {"b1": [0.5] * 3})
    v = stats.verdicts(records).set_index("strategy")
    assert v.loc["close", "verdict"] == "equivalent" and v.loc["close", "runs"] == 6
    assert v.loc["late", "runs"] == 3 and v.loc["late", "verdict"] == "worse"  # compared on the b1 runs it has
    assert v.loc["best", "verdict"] == "best" and (v.best == "best").all()
    assert stats.verdicts(records, rope=0.0).loc[1, "verdict"] == "undecided"  # no region: nothing is equivalent


def test_across_matrix_counts_a_datasets_test_examples_once():
    rng = np.random.default_rng(2)
    records = []
    base = (rng.random((3, 200)) < 0.6).astype(int)
    for budget in (5, 20, 100):
        records.append(_with_predictions(_record("feature_extraction", [0, 0, 0], budget=budget), base))
        # the same 20 examples gained at every budget: the budgets' differences move together
        gained = base.copy()
        gained[:, :20] = 1
        records.append(_with_predictions(_record("finetune", [0, 0, 0], budget=budget), gained))
    row = stats.across_matrix(records, "feature_extraction").iloc[0]
    d = (gained - base).mean()
    assert row.strategy == "finetune" and row.groups == 3 and row.datasets == 1
    assert row["diff"] == pytest.approx(d)
    # about one budget's interval, not 1 / sqrt(3) of it: shared test examples do not average out over budgets
    one = stats.verdicts(records[:2]).set_index("strategy").loc["feature_extraction"]
    assert row.ci_high - row.ci_low > 0.85 * (one.ci_high - one.ci_low)


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
