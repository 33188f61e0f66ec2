"""Benchmark: how often do the verdicts call equal strategies different, and how often do they find a real gap?

Two strategies are simulated as the reference run's cells behave. Test examples have a difficulty (a logit offset,
N(0, 2)) shared by every run; each run (a seed) has its own effect on the logit scale (N(0, run_sd)); each
prediction is then a coin with the run's and the example's odds. Strategy a's logits are shifted so that its
accuracy is ``delta_points`` above b's. Both are tested on the same examples at the same seeds, as in a cell.

Each draw runs the procedure ``make bench`` runs: ``seeds.min`` seeds, then racing (``Difference.seeds_to_decide``)
up to ``seeds.max``, and the verdict against +-rope (``bench.analysis.comparison``). For comparison, the hierarchical
percentile bootstrap (seeds resampled, then test examples with the same indices for both strategies; Bouthillier
et al. 2021) is scored at the minimum seeds: its interval in place of ours, same region, no racing.

    .venv/bin/python benchmarks/calibration.py [--draws 1000]

tests/test_calibration.py holds the procedure to its bounds at the reference's noise.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from bench.analysis import comparison

DIFFICULTY_SD = 2.0
BASE_LOGIT = 0.4  # b's accuracy about 56 % with the difficulty spread


@dataclass(frozen=True)
class Noise:
    examples: int  # test examples, shared by every run
    run_sd: float  # each run's (seed's) effect on the logit scale

    def difference(self, delta_points: float) -> float:
        """The accuracy difference a logit shift of ``shift(delta_points)`` gives over the difficulty spread."""
        return float(_accuracy(BASE_LOGIT + self.shift(delta_points)) - _accuracy(BASE_LOGIT))

    def shift(self, delta_points: float) -> float:
        if delta_points == 0:
            return 0.0
        target = delta_points / 100
        return float(optimize.brentq(lambda s: _accuracy(BASE_LOGIT + s) - _accuracy(BASE_LOGIT) - target, -10, 10))


_QUANTILES = stats.norm.ppf((np.arange(4000) + 0.5) / 4000) * DIFFICULTY_SD


def _accuracy(logit: float) -> float:
    return float(special.expit(logit + _QUANTILES).mean())


@dataclass(frozen=True)
class Calls:
    verdicts: np.ndarray  # one per draw
    seeds: np.ndarray  # seeds each draw ended with


def race(
    noise: Noise,
    delta_points: float,
    draws: int,
    rng: np.random.Generator,
    seeds: tuple[int, int] = (3, 10),
    rope: float = 0.01,
    confidence: float = 0.95,
) -> Calls:
    """``draws`` contests of a against b, each decided as ``make bench`` decides one (racing included)."""
    shift = noise.shift(delta_points)
    verdicts, used = [], []
    for _ in range(draws):
        difficulty = rng.normal(0, DIFFICULTY_SD, noise.examples)
        a: list[np.ndarray] = []
        b: list[np.ndarray] = []
        want = seeds[0]
        while True:
            while len(a) < want:
                a.append(_run(rng, noise, BASE_LOGIT + shift, difficulty))
                b.append(_run(rng, noise, BASE_LOGIT, difficulty))
            d = comparison.difference_of(np.array(a), np.array(b), confidence)
            verdict = d.verdict(rope)
            more = d.seeds_to_decide(seeds[1], rope, confidence) if verdict == comparison.UNDECIDED else None
            if more is None:
                break
            want = more
        verdicts.append(verdict)
        used.append(len(a))
    return Calls(np.array(verdicts), np.array(used))


def _run(rng: np.random.Generator, noise: Noise, logit: float, difficulty: np.ndarray) -> np.ndarray:
    """One run's test correctness: its own effect on the logit, then a coin per example."""
    p = special.expit(logit + rng.normal(0, noise.run_sd) + difficulty)
    return (rng.random(noise.examples) < p).astype(float)


def bootstrap_verdicts(
    noise: Noise, delta_points: float, draws: int, rng: np.random.Generator, seeds: int = 3, resamples: int = 1000
) -> np.ndarray:
    """The hierarchical percentile bootstrap's verdicts at ``seeds`` seeds (95 % interval, 1-point region)."""
    shift = noise.shift(delta_points)
    out = []
    for _ in range(draws):
        difficulty = rng.normal(0, DIFFICULTY_SD, noise.examples)
        d = np.array(
            [
                _run(rng, noise, BASE_LOGIT + shift, difficulty) - _run(rng, noise, BASE_LOGIT, difficulty)
                for _ in range(seeds)
            ]
        )
        # examples resampled once per replicate, the same indices for every seed: weights as multinomial counts
        counts = rng.multinomial(noise.examples, np.full(noise.examples, 1 / noise.examples), size=resamples)
        per_seed = d @ counts.T / noise.examples  # seeds x resamples
        pick = rng.integers(0, seeds, size=(resamples, seeds))
        means = per_seed[pick, np.arange(resamples)[:, None]].mean(axis=1)
        low, high = np.quantile(means, [0.025, 0.975])
        out.append(comparison.verdict(float(low), float(high), 0.01))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.draws} draws per row; 'different' = better or worse; 'found' = better")
    print(
        f"{'test examples':>13} {'run sd':>6} {'seed sd (pts)':>13} | {'ours: A/A different':>19} {'seeds':>5} "
        f"{'10 pts found':>12} {'seeds':>5} | {'bootstrap@3: A/A different':>26} {'10 pts found':>12}"
    )
    for examples in (300, 2000):
        for run_sd in (0.1, 0.15, 0.3):
            noise = Noise(examples, run_sd)
            start = time.perf_counter()
            null = race(noise, 0.0, args.draws, np.random.default_rng(0))
            alt = race(noise, 10.0, args.draws, np.random.default_rng(1))
            boot_null = bootstrap_verdicts(noise, 0.0, args.draws, np.random.default_rng(2))
            boot_alt = bootstrap_verdicts(noise, 10.0, args.draws, np.random.default_rng(3))
            spread = 100 * np.std([_accuracy(BASE_LOGIT + e) for e in np.random.default_rng(4).normal(0, run_sd, 400)])
            print(
                f"{examples:>13} {run_sd:>6} {spread:>13.1f} | "
                f"{np.isin(null.verdicts, ['better', 'worse']).mean():>19.3f} {null.seeds.mean():>5.1f} "
                f"{(alt.verdicts == 'better').mean():>12.3f} {alt.seeds.mean():>5.1f} | "
                f"{np.isin(boot_null, ['better', 'worse']).mean():>26.3f} {(boot_alt == 'better').mean():>12.3f}"
                f"   ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
