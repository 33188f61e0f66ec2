"""The paired comparison's interval and verdict on tables with known answers (``bench.analysis.comparison``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.analysis import comparison


def test_one_example_per_seed_is_the_paired_t_interval():
    x = np.array([[0.1], [0.3], [0.2], [0.6]])
    est = comparison.estimate(x, 0.95)
    half = scipy_stats.t.ppf(0.975, 3) * x.std(ddof=1) / math.sqrt(4)
    assert (est.mean, est.ci_low, est.ci_high) == pytest.approx((0.3, 0.3 - half, 0.3 + half))


def test_one_seed_has_no_interval():
    est = comparison.estimate(np.array([[1.0, 0.0, 1.0]]), 0.95)
    assert est.ci_low == -math.inf and est.ci_high == math.inf
    assert comparison.verdict(est.ci_low, est.ci_high, 0.01) == "undecided"


def test_the_components_are_recovered_from_a_large_crossed_table():
    rng = np.random.default_rng(0)
    seeds, examples = 400, 400
    x = rng.normal(0, 0.3, (seeds, 1)) + rng.normal(0, 0.5, (1, examples)) + rng.normal(0, 1.0, (seeds, examples))
    parts = comparison.components(x)
    assert (parts.seed, parts.example, parts.noise) == pytest.approx((0.09, 0.25, 1.0), rel=0.2)


def test_the_interval_covers_the_truth_95_percent_of_the_time():
    # seeds and examples both random: over repeated experiments the 95 % interval covers the true mean 0
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(1000):
        x = rng.normal(0, 0.05, (3, 1)) + rng.normal(0, 0.3, (1, 300)) + rng.normal(0, 0.5, (3, 300))
        est = comparison.estimate(x, 0.95)
        covered += est.ci_low <= 0 <= est.ci_high
    assert 0.93 <= covered / 1000 <= 0.985


@pytest.mark.parametrize(
    ("low", "high", "word"),
    [(0.02, 0.05, "better"), (-0.05, -0.02, "worse"), (-0.005, 0.008, "equivalent"), (-0.02, 0.005, "undecided")],
)
def test_the_verdict_against_the_region(low, high, word):
    assert comparison.verdict(low, high, 0.01) == word


def test_more_seeds_are_asked_only_where_they_would_decide():
    rng = np.random.default_rng(2)
    # a 6-point difference with a wide spread between seeds: 3 seeds leave it open, more decide it
    a = np.array([[0.12], [0.0], [0.08]])
    d = comparison.Difference(comparison.estimate(a, 0.95), 1.0)
    assert d.verdict(0.01) == "undecided"
    needed = d.seeds_to_decide(10, 0.01, 0.95)
    assert needed is not None and 3 < needed <= 10
    # two runs that disagree on 20 % of 300 examples, about evenly: no number of seeds brings the interval inside
    # 1 point, because the test examples' own error stays
    x = np.array([rng.permutation([1.0] * 30 + [-1.0] * 30 + [0.0] * 240) for _ in range(3)])
    close = comparison.Difference(comparison.estimate(x, 0.95), 0.5)
    assert close.diff == 0
    assert close.verdict(0.01) == "undecided" and close.seeds_to_decide(10, 0.01, 0.95) is None


def test_differences_pair_runs_and_examples_both_have():
    a = {("m", 0): {0: 1.0, 1: 1.0, 2: 0.0}, ("m", 1): {0: 1.0, 1: 0.0, 2: 1.0}, ("m", 2): {0: 1.0, 1: 1.0, 2: 1.0}}
    b = {("m", 0): {0: 0.0, 1: 1.0, 2: 0.0}, ("m", 1): {0: 0.0, 1: 0.0, 2: 1.0}}
    d = comparison.difference(a, b, 0.95)
    assert d.estimate.seeds == 2 and d.estimate.n_test == 3 and d.diff == pytest.approx(1 / 3)
    assert d.p_improve == 1.0  # both of a's runs beat both of b's (2/3 and 2/3 against 1/3 and 1/3)
    assert comparison.difference(a, {("other", 0): {0: 1.0}}, 0.95) is None
