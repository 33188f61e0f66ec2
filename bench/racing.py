"""Racing: more final seeds only where a contest is still open (F-Race, Birattari et al. 2002; irace).

Every cell trains ``seeds.min`` final seeds. Then each contest the report makes (every strategy against the best of
its dataset and budget, and against scratch; ``stats.contests``) that is still undecided, and that more seeds are
expected to decide (``comparison.Difference.seeds_to_decide``: its interval at that many seeds, were the
difference and its variance components to stay as measured, would lie inside or beyond the region of practical
equivalence), asks for that many seeds on both of its cells, up to ``seeds.max``. The runner trains them, and asks
again, until no contest asks for more. Settled contests, and contests that even ``seeds.max`` seeds would leave
open (a difference inside the test set's own error), get none.

Whether a contest asks is a function of the finished seeds alone, so an interrupted run resumes the same race.
"""

from __future__ import annotations

import math
from typing import Any

from bench.analysis import comparison, stats
from bench.config import Experiment


def more_seeds(records: list[dict[str, Any]], exp: Experiment) -> dict[str, int]:
    """The cells (by key) that need more final seeds than they have, and how many they need in all."""
    if not exp.seeds.races:
        return {}
    have = {r["cell_key"]: len(r["seeds"]) for r in records}
    want: dict[str, int] = {}
    rope, confidence = exp.statistics.rope, exp.statistics.confidence
    for contest in stats.contests(stats.distinct(records), confidence):
        d = contest.difference
        if d is None or d.verdict(rope) != comparison.UNDECIDED:
            continue
        runs_per_seed = max(1, round(d.estimate.seeds / min(have[k] for k in contest.cell_keys)))
        runs = d.seeds_to_decide(exp.seeds.most * runs_per_seed, rope, confidence)
        if runs is None:
            continue
        seeds = min(exp.seeds.most, math.ceil(runs / runs_per_seed))
        for key in contest.cell_keys:
            if seeds > have[key]:
                want[key] = max(want.get(key, 0), seeds)
    return want
