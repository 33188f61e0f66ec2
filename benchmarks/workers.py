"""Benchmark: what `bench run --workers N` buys, and what a second `bench run` on the same folder costs.

Matrices of 8 fine-tuning cells with the default's training settings, each run by `bench run` in a fresh results
folder with warm caches:
- image: experiments/default.yaml's two image backbones x its two budgets x `finetune`, `l2sp`, on CIFAR-10;
- audio: its audio backbone x its two budgets x `finetune`, `l2sp`, `l2`, `partial`, on FSDD;
- text (with --text; slow): its text backbone x its two budgets x `finetune`, `l2sp`, on SMS Spam (4 cells).

For each: one worker using every core (`training.threads` = cores), the baseline, against one worker per core
(`training.threads: 1`, the default). For the image matrix also: a second `bench run` of the same file and folder
started 10 s after a first one: the first run's wall time, and the time until both have finished (the second
writes the same report after the first), each against one run alone. Configurations are interleaved, medians
of --repeats. Figures, with the machine and versions, go to results/perf/workers.json.

    make perf            # or: .venv/bin/python benchmarks/workers.py --repeats 3 [--text]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import record  # benchmarks/record.py
import yaml

from bench import environment, paths

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "experiments" / "default.yaml"
SECOND_AFTER = 10.0


MATRICES = {  # modality: (dataset, strategies)
    "image": ("cifar10", ["finetune", "l2sp"]),
    "audio": ("fsdd", ["finetune", "l2sp", "l2", "partial"]),
    "text": ("sms_spam", ["finetune", "l2sp"]),
}


def matrix(modality: str, threads: int) -> dict:
    """The default's backbones of ``modality`` and its budgets on one dataset, with fine-tuning strategies."""
    from bench import backbones

    default = yaml.safe_load(DEFAULT.read_text())
    dataset, strategies = MATRICES[modality]
    chosen = [b for b in default["backbones"] if backbones.resolve(b["name"]).modality == modality]
    return default | {
        "name": "perf_workers",
        "backbones": chosen,
        "datasets": [dataset],
        "strategies": strategies,
        "training": {**default["training"], "threads": threads},
    }


def bench_run(file: Path, results: Path, cache: Path, workers: str) -> subprocess.Popen:
    env = {**os.environ, paths.RESULTS_ENV: str(results), paths.CACHE_ENV: str(cache)}
    command = [sys.executable, "-m", "bench", "run", str(file), "--workers", workers]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def timed(file: Path, cache: Path, workers: str, second: bool = False) -> tuple[float, float]:
    """Wall seconds until the run has finished, and (with ``second``: a second run on the same folder, started
    later) until both have."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        procs = [bench_run(file, Path(tmp), cache, workers)]
        if second:
            time.sleep(SECOND_AFTER)
            procs.append(bench_run(file, Path(tmp), cache, workers))
        ends = []
        for p in procs:
            if p.wait() != 0:
                raise SystemExit(f"bench run {file} failed")
            ends.append(time.perf_counter() - start)
        return ends[0], ends[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--text", action="store_true", help="also the text matrix (about 2 min per run)")
    args = parser.parse_args()
    cores = environment.available_cores()
    modalities = ["image", "audio", *(["text"] if args.text else [])]
    with tempfile.TemporaryDirectory() as tmp:
        configurations, warmups = {}, []
        for modality in modalities:
            files = {}
            for threads in (cores, 1):
                files[threads] = Path(tmp) / f"{modality}_t{threads}.yaml"
                files[threads].write_text(yaml.safe_dump(matrix(modality, threads)))
            warmups.append(files[1])
            configurations[f"{modality}: 1 worker x {cores} threads"] = (files[cores], "1", False)
            configurations[f"{modality}: {cores} workers x 1 thread"] = (files[1], str(cores), False)
            if modality == "image":
                name = f"image: two runs of {cores} workers, the second {SECOND_AFTER:.0f} s later"
                configurations[name] = (files[1], str(cores), True)
        cache = Path(tmp) / "cache"
        for file in warmups:
            timed(file, cache, "1")  # fills the caches, untimed
        seconds: dict[str, list[float]] = {name: [] for name in configurations}
        for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits every configuration
            for name, (file, workers, second) in configurations.items():
                first, both = timed(file, cache, workers, second)
                seconds[name].append(first)
                if second:
                    seconds.setdefault(f"{name}, until both end", []).append(both)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    ratios = {}
    for modality in modalities:
        one, pool = median[f"{modality}: 1 worker x {cores} threads"], median[f"{modality}: {cores} workers x 1 thread"]
        ratios[f"{modality}: throughput of {cores} workers over 1 worker on all cores"] = one / pool
    two = next(name for name in configurations if "two runs" in name)
    alone = median[f"image: {cores} workers x 1 thread"]
    ratios["image: the first run's wall time with a second beside it, over one run alone"] = median[two] / alone
    ratios["image: until both runs end, over one run alone"] = median[f"{two}, until both end"] / alone
    result = {
        "what": "8 fine-tuning cells per modality with the default's settings, fresh stores, warm caches; wall "
        "seconds, medians",
        "cores": cores,
        "repeats": args.repeats,
        "seconds": seconds,
        "seconds_median": median,
        "ratios": ratios,
    }
    out = record.write("workers", result)
    for name in seconds:
        print(f"{name:>70}: {median[name]:6.1f} s (median of {args.repeats})")
    for name, ratio in ratios.items():
        print(f"{name:>70}: {ratio:.2f}x")
    print(f"({out})")


if __name__ == "__main__":
    main()
