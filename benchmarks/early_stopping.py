"""Benchmark: which early-stopping rule keeps the weights that test best, on the default's gradient-trained cells?

Each run trains a cell of experiments/default.yaml at its strategy's default hyperparameters for its whole schedule
(no stopping), through the harness (``CellTrainer``: the same split, model, schedule and loop as ``make bench``), and
records at its starting weights and at every validation the validation accuracy, the validation cross-entropy and
the test accuracy. Every rule is then replayed on that record exactly as ``bench.loop.fit`` applies it (a rule
only reads the validations up to where it stops), and scored by the test accuracy of the weights it keeps:

- ``accuracy, patience 2``: the best validation accuracy, stopping after 2 validations without a better one
  (the counting starts after the warm-up, once the run has beaten its start: ``Schedule``);
- ``loss, patience 2``: the same on validation cross-entropy (smoother on a few examples);
- ``accuracy + 1 SE, patience 2``: better only by more than one binomial standard error, 0.5 / sqrt(n_val);
- ``last step``: no stopping, the last weights (what a cell without a hold-out does).

Budgets without a hold-out (5 per class) are left out: they have nothing to stop on. Results go to
results/perf/early_stopping.json and a table to stdout.

    .venv/bin/python benchmarks/early_stopping.py [--strategies finetune lp_ft] [--seeds 0 1 2] [--test-per-class 100]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import record  # benchmarks/record.py
import torch
import yaml

from bench import config, data
from bench.loop import EvalStats, Schedule, evaluate, patience_step
from bench.matrix import expand
from bench.training_run import CellTrainer, min_delta
from bench.tuning import defaults

RULES = {  # name: (monitor, minimum improvement: a number, or "binomial"), all with the default's patience
    "accuracy, patience 2": ("val_acc", 0.0),
    "loss, patience 2": ("val_loss", 0.0),
    "accuracy + 1 SE, patience 2": ("val_acc", "binomial"),
}


def kept_by(points: list[dict], plan: Schedule) -> dict:
    """The point ``bench.loop.fit`` ends on under ``plan``, replayed on a full run's validations (the first
    point is the starting weights)."""
    stats = [EvalStats(p["step"], 0.0, math.nan, p["val_acc"], p["val_loss"]) for p in points]
    kept, waited = stats[0], 0
    for s in stats[1:]:
        kept, waited = patience_step(plan, kept, s, waited)
        if waited == plan.patience:
            break
    return points[stats.index(kept)]


class Recorded(CellTrainer):
    """A cell trainer that records validation and test figures of the model at its start and every validation."""

    def run_recorded(self, hp: dict, seed: int) -> list[dict]:
        points: list[dict] = []
        split = self.split(seed)
        strategy = self.strategy
        real_groups = strategy.param_groups

        def measure(model: torch.nn.Module, step: int) -> None:
            batches = self._input_batches(model, split)
            val_acc, val_loss = evaluate(model, batches["val"])
            test_acc, _ = evaluate(model, batches["test"])
            points.append({"step": step, "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc})

        def groups(model, hp):  # the model as the loop starts on it: after the probe of LP-FT
            self.model = model
            measure(model, 0)
            return real_groups(model, hp)

        strategy.param_groups = groups
        try:
            self.run(hp, seed, on_eval=lambda stats: measure(self.model, stats.step))
        finally:
            strategy.param_groups = real_groups
        return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=["finetune", "lp_ft"])
    parser.add_argument("--datasets", nargs="+", default=["cifar10", "sms_spam", "fsdd"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[20, 100])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--test-per-class", type=int, default=100, help="test examples per class (fewer: evaluation dominates)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    raw = yaml.safe_load((Path(__file__).parents[1] / "experiments" / "default.yaml").read_text())
    patience = raw["training"]["patience"]  # the default's, for every rule
    raw |= {"name": "early_stopping", "strategies": args.strategies, "budgets": args.budgets}
    raw["datasets"] = args.datasets
    raw["splits"] = {**raw.get("splits", {}), "test_per_class": args.test_per_class}
    raw["training"] = {**raw["training"], "patience": None}  # train the whole schedule: the rules are replayed
    exp = config.parse(raw)
    warmup = exp.training.warmup_steps
    runs, loaded = [], {}
    start = time.perf_counter()
    for cell in expand(exp):
        ds = loaded.setdefault(cell.dataset, data.DATASETS.get(cell.dataset).load())
        trainer = Recorded(cell, exp, ds)
        if not trainer.validates():
            continue
        hp = defaults(trainer)
        n_val = len(trainer.split(0).val)
        for seed in args.seeds:
            points = trainer.run_recorded(hp, seed)
            plans = {
                name: Schedule(
                    points[-1]["step"],
                    1,
                    patience=patience,
                    warmup=min(warmup, points[-1]["step"] - 1),
                    monitor=monitor,
                    min_delta=min_delta(delta, n_val),
                )
                for name, (monitor, delta) in RULES.items()
            }
            kept = {name: kept_by(points, plan) for name, plan in plans.items()}
            kept["last step"] = points[-1]
            runs.append(
                {
                    "dataset": cell.dataset,
                    "budget": cell.budget,
                    "strategy": cell.strategy,
                    "seed": seed,
                    "n_val": n_val,
                    "points": points,
                    "kept": {name: {"step": p["step"], "test_acc": p["test_acc"]} for name, p in kept.items()},
                }
            )
            print(cell.run_name, seed, {name: round(100 * p["test_acc"], 1) for name, p in kept.items()}, flush=True)
    rules = [*RULES, "last step"]
    table = {}
    for key in sorted({(r["strategy"], r["dataset"], r["budget"]) for r in runs}):
        rows = [r for r in runs if (r["strategy"], r["dataset"], r["budget"]) == key]
        table["/".join(map(str, key))] = {
            rule: statistics.fmean(r["kept"][rule]["test_acc"] for r in rows) for rule in rules
        }
    overall = {rule: statistics.fmean(v[rule] for v in table.values()) for rule in rules}
    wins = {rule: sum(max(v.values()) - v[rule] < 1e-12 for v in table.values()) for rule in rules}
    print(f"\n{'cell':32}" + "".join(f"{rule:>30}" for rule in rules))
    for key, row in table.items():
        print(f"{key:32}" + "".join(f"{100 * row[rule]:>30.1f}" for rule in rules))
    print(f"{'mean':32}" + "".join(f"{100 * overall[rule]:>30.2f}" for rule in rules))
    print(f"{'best (of ' + str(len(table)) + ')':32}" + "".join(f"{wins[rule]:>30}" for rule in rules))
    out = record.write(
        "early_stopping",
        {
            "settings": vars(args),
            "seconds": round(time.perf_counter() - start, 1),
            "mean_test_acc": overall,
            "best_in_groups": wins,
            "by_group": table,
            "runs": runs,
        },
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
