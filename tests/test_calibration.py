"""The verdicts' error rates, measured on simulated strategies whose answer is known.

Two strategies are drawn as the reference run's cells behave: test examples of varied difficulty shared by every
run, a random effect per run (seed), and every prediction a coin with the run's and the example's odds. At the
reference's noise, the whole procedure (3 seeds, racing up to 6 where a contest is open, as the default does,
the verdict against a 1-point region of practical equivalence) must call two equal strategies different in at
most 5 % of 1,000 draws (plus three binomial standard errors of slack) and find a 10-point difference in at
least 80 %.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from calibration import Noise, race  # noqa: E402  benchmarks/calibration.py: the simulation, shared with its table

DRAWS = 1000
SEEDS = (3, 6)  # experiments/default.yaml: seeds {min: 3, max: 6}
BOUND = 0.05 + 3 * math.sqrt(0.05 * 0.95 / DRAWS)  # 5 % and three binomial standard errors: 0.071

# results/reference: SMS Spam and FSDD test 298-300 examples, CIFAR-10 2,000; the median spread of a strategy's
# accuracy between seeds is 2-3 points (a run effect of 0.15 on the logit scale gives 2.4)
CASES = [Noise(examples=300, run_sd=0.15), Noise(examples=2000, run_sd=0.15)]


@pytest.mark.parametrize("noise", CASES, ids=lambda n: f"{n.examples}-examples")
def test_equal_strategies_are_called_different_at_most_5_percent_of_the_time(noise):
    calls = race(noise, delta_points=0.0, draws=DRAWS, rng=np.random.default_rng(0), seeds=SEEDS)
    different = np.isin(calls.verdicts, ["better", "worse"]).mean()
    assert different <= BOUND, f"{different:.3f} of {DRAWS} A/A draws declared a difference"


@pytest.mark.parametrize("noise", CASES, ids=lambda n: f"{n.examples}-examples")
def test_a_10_point_difference_is_found_at_least_80_percent_of_the_time(noise):
    calls = race(noise, delta_points=10.0, draws=DRAWS, rng=np.random.default_rng(1), seeds=SEEDS)
    found = (calls.verdicts == "better").mean()
    assert found >= 0.80, f"a true 10-point difference was found in {found:.3f} of {DRAWS} draws"
    assert (calls.verdicts != "worse").all()  # never the wrong way round
    assert calls.seeds.min() >= 3 and calls.seeds.max() <= 6


def test_the_simulated_difference_is_the_one_asked_for():
    noise = CASES[0]
    assert noise.difference(10.0) == pytest.approx(0.10, abs=0.003)
    assert noise.difference(0.0) == 0.0
