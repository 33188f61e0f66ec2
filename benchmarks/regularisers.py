"""Benchmark: do the weight penalties and LP-FT's second phase act within the default's steps?

For cells of experiments/default.yaml (its schedule, splits, early stopping), trains through the harness
(``CellTrainer``):

- ``finetune`` at its defaults, the reference;
- each penalty strategy (l1, l2, l1sp, l2sp) at its default strength times each ``--scales`` factor, recording the
  ratio of the penalty's gradient norm to the cross-entropy's at the first and the last step (the MLflow metrics
  ``penalty_grad_ratio_first`` / ``_last``), the test accuracy, and the share of test predictions that differ from
  ``finetune``'s at the same seed (0: the penalty changed nothing);
- ``lp_ft`` at each ``--lp-ft-lrs`` rate with BatchNorm in train mode and frozen, beside the probe it starts from
  (the same labelled examples: its test accuracy at step 0) and the ``feature_extraction`` cell's probe (on the
  whole budget).

Results go to results/perf/regularisers.json and a table to stdout.

    .venv/bin/python benchmarks/regularisers.py [--datasets cifar10] [--budgets 5 20 100] [--seeds 0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import record  # benchmarks/record.py
import torch
import yaml

from bench import config, data
from bench.matrix import expand
from bench.training_run import CellTrainer
from bench.tuning import defaults

STRENGTH = {"l1": "lambda", "l2": "lambda", "l1sp": "alpha", "l2sp": "alpha"}  # the backbone's penalty strength


def experiment(datasets: list[str], budgets: list[int], strategies: list[str]) -> config.Experiment:
    raw = yaml.safe_load((Path(__file__).parents[1] / "experiments" / "default.yaml").read_text())
    raw |= {"name": "regularisers", "datasets": datasets, "budgets": budgets, "strategies": strategies}
    return config.parse(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["cifar10"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[5, 20, 100])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--penalties", nargs="+", default=list(STRENGTH))
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 100.0])
    parser.add_argument("--lp-ft-lrs", nargs="+", type=float, default=[3e-5, 3e-4])
    parser.add_argument("--batchnorms", nargs="+", default=["train", "frozen"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    exp = experiment(args.datasets, args.budgets, ["finetune", "feature_extraction", "lp_ft", *args.penalties])
    rows, loaded, start = [], {}, time.perf_counter()
    for cell in expand(exp):
        if cell.strategy != "finetune":
            continue
        ds = loaded.setdefault(cell.dataset, data.DATASETS.get(cell.dataset).load())
        where = (cell.backbone, cell.dataset, cell.budget)
        trainers = {
            c.strategy: CellTrainer(c, exp, ds) for c in expand(exp) if (c.backbone, c.dataset, c.budget) == where
        }
        for seed in args.seeds:
            base = trainers["finetune"].run(defaults(trainers["finetune"]), seed, test=True)
            probe = trainers["feature_extraction"].run({}, seed, test=True)
            where = {"dataset": cell.dataset, "budget": cell.budget, "seed": seed}
            rows.append({**where, "strategy": "finetune", "test_acc": base.test_acc, "best_step": base.best_step})
            rows.append({**where, "strategy": "feature_extraction", "test_acc": probe.test_acc})
            for name in args.penalties:
                t = trainers[name]
                for scale in args.scales:
                    hp = defaults(t)
                    hp[STRENGTH[name]] *= scale
                    run = t.run(hp, seed, test=True)
                    rows.append(
                        {
                            **where,
                            "strategy": name,
                            "scale": scale,
                            "strength": hp[STRENGTH[name]],
                            "test_acc": run.test_acc,
                            "changed": float(np.mean(run.test_pred != base.test_pred)),
                            "best_step": run.best_step,
                            **{k: v for k, v in run.diagnostics.items() if k.startswith("penalty")},
                        }
                    )
                    print(rows[-1], flush=True)
            t = trainers["lp_ft"]
            real = type(t.strategy).batchnorm
            for batchnorm in args.batchnorms:
                type(t.strategy).batchnorm = batchnorm
                for lr in args.lp_ft_lrs:
                    run = t.run({**defaults(t), "lr": lr}, seed, test=True)
                    rows.append(
                        {
                            **where,
                            "strategy": "lp_ft",
                            "lr": lr,
                            "batchnorm": batchnorm,
                            "test_acc": run.test_acc,
                            "best_step": run.best_step,
                            "steps": run.steps,
                            "probe_test_acc": probe.test_acc,
                        }
                    )
                    print(rows[-1], flush=True)
            type(t.strategy).batchnorm = real
    spent = round(time.perf_counter() - start)
    out = record.write("regularisers", {"settings": vars(args), "seconds": spent, "rows": rows})
    print(f"written to {out}")
    for name in args.penalties:
        for scale in args.scales:
            sel = [r for r in rows if r["strategy"] == name and r.get("scale") == scale]
            if sel:
                changed = 100 * statistics.fmean(r["changed"] for r in sel)
                first, last = (
                    statistics.median(r.get(f"penalty_grad_ratio_{k}", np.nan) for r in sel) for k in ("first", "last")
                )
                print(
                    f"{name:5} x{scale:<6g} changed {changed:5.1f} % of predictions; gradient ratio {first:.2g}", end=""
                )
                print(f" -> {last:.2g}")


if __name__ == "__main__":
    main()
