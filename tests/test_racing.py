"""Racing: more final seeds only for the cells of contests still open, and a run that trains them."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import yaml
from conftest import tiny_experiment

from bench import config, matrix, racing, results
from bench.cli import main


def _cell(strategy: str, correct: np.ndarray, budget: int = 10) -> dict:
    """A finished cell whose seed i got ``correct[i]`` (1 right, 0 wrong per test example)."""
    return {
        "modality": "image",
        "dataset": "d",
        "backbone": "b",
        "budget": budget,
        "strategy": strategy,
        "cell_key": f"{strategy}-{budget}",
        "seeds": [
            {
                "seed": i,
                "test_acc": float(np.mean(right)),
                "train_counts": {"0": budget, "1": budget},
                "predictions": {
                    "test_index": list(range(len(right))),
                    "predicted": [0 if r else 1 for r in right],
                    "true": [0] * len(right),
                },
            }
            for i, right in enumerate(correct)
        ],
    }


def _exp(seeds) -> config.Experiment:
    return config.parse(tiny_experiment(seeds=seeds), "test")


def _seeds_right(rng: np.random.Generator, rates: list[float], examples: int = 2000) -> np.ndarray:
    return np.array([(rng.random(examples) < r).astype(int) for r in rates])


def test_only_open_contests_that_more_seeds_can_decide_get_them():
    rng = np.random.default_rng(0)
    records = [
        _cell("best", _seeds_right(rng, [0.80, 0.80, 0.80])),
        _cell("far", _seeds_right(rng, [0.40, 0.41, 0.39])),  # 40 points behind: decided at 3 seeds
        _cell("spread", _seeds_right(rng, [0.78, 0.62, 0.74])),  # 9 points behind, seeds far apart: open
    ]
    want = racing.more_seeds(records, _exp({"min": 3, "max": 10}))
    assert set(want) == {"spread-10", "best-10"}  # both sides of the open contest, nothing else
    assert want["spread-10"] == want["best-10"] and 3 < want["spread-10"] <= 10
    assert racing.more_seeds(records, _exp(3)) == {}  # a plain number: no racing


def test_a_contest_inside_the_test_sets_own_error_gets_no_seeds():
    rng = np.random.default_rng(1)
    records = [_cell("a", _seeds_right(rng, [0.5] * 3, 300)), _cell("b", _seeds_right(rng, [0.5] * 3, 300))]
    assert racing.more_seeds(records, _exp({"min": 3, "max": 10})) == {}


def test_a_run_races_and_a_rerun_trains_nothing(tmp_path, results_root, capsys):
    path = tmp_path / "race.yaml"
    # near chance on 50 test examples, the contests are open at 2 seeds; a 15-point region lets more seeds settle them
    spec = tiny_experiment(name="race", seeds={"min": 2, "max": 4}, statistics={"rope": 0.15})
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path)]) == 0
    assert "racing: 3 cell(s) of contests still undecided get more seeds (up to 4)" in capsys.readouterr().out
    exp = config.load(path)
    records = [results.load_cell("race", c) for c in matrix.expand(exp)]
    seeds = {r["strategy"]: len(r["seeds"]) for r in records}
    assert set(seeds.values()) <= {2, 3, 4}
    assert racing.more_seeds(records, exp) == {}  # the race is over: nothing open that seeds would decide
    # every cell the first round asked for got its seeds (a later round may ask again)
    first_round = copy.deepcopy(records)
    for r in first_round:
        r["seeds"] = r["seeds"][:2]
    asked = racing.more_seeds(first_round, exp)
    assert asked and all(len(r["seeds"]) >= asked[r["cell_key"]] for r in records if r["cell_key"] in asked)
    assert [s["seed"] for s in records[0]["seeds"]] == list(range(len(records[0]["seeds"])))
    summary = pd.read_csv(results_root / "race" / "summary.csv").set_index("strategy")
    assert summary.seeds.to_dict() == seeds
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cell(s) to train" not in out and out.count("finished earlier") == 3
