"""Benchmark: a repeated feature_extraction trial against the first one, whose features are not cached yet.

Both are timed side by side in one process, several times, with the feature cache emptied before each
first trial (decoded data and converted weights stay cached, so only the features differ). Prints the
medians and their ratio and writes them to results/perf/feature_cache.json.

    make perf            # or: .venv/bin/python benchmarks/feature_cache.py --repeats 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

import record  # benchmarks/record.py

from bench import config, data, environment, features, paths
from bench.matrix import expand
from bench.training_run import CellTrainer

HP = {"C": 0.1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget", type=int, default=50, help="training images per class")
    args = p.parse_args()
    environment.set_threads()  # this process's cores, as a run uses them

    exp = config.parse(
        {
            "name": "perf",
            "backbones": [{"name": "mobilenetv2_100", "input_size": 96}],
            "datasets": ["cifar10"],
            "strategies": ["feature_extraction"],
            "budgets": [args.budget],
            "splits": {"test_per_class": 100},
        }
    )
    trainer = CellTrainer(expand(exp)[0], exp, data.DATASETS.get("cifar10").load())
    trainer.build_model(0)  # converts and caches the weights outside the timings
    first, repeated = [], []
    for _ in range(args.repeats):
        shutil.rmtree(paths.cache_dir("features"))
        features.clear_memory()
        for times in (first, repeated):
            start = time.perf_counter()
            trainer.run(HP, seed=0)
            times.append(time.perf_counter() - start)
    result = {
        "what": f"feature_extraction trial, cifar10, mobilenetv2_100 at 96 px, {args.budget}/class, converged probe",
        "repeats": args.repeats,
        "first_trial_s_median": statistics.median(first),
        "repeated_trial_s_median": statistics.median(repeated),
        "speedup_median": statistics.median(f / r for f, r in zip(first, repeated, strict=True)),
        "first_trial_s": first,
        "repeated_trial_s": repeated,
    }
    out = record.write("feature_cache", result)
    print(f"{result['what']}, {args.repeats} repeats (medians):")
    print(f"  first trial (features computed): {result['first_trial_s_median']:.2f} s")
    print(f"  repeated trial (features cached): {result['repeated_trial_s_median']:.2f} s")
    print(f"  speed-up: {result['speedup_median']:.1f}x   ({out})")


if __name__ == "__main__":
    main()
