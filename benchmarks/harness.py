"""Benchmark: what the harness costs on top of the training it runs.

(a) One fine-tuning trial through the harness (a fresh Optuna study and trial, the MLflow parent and trial runs,
    the model from the in-memory pretrained copy, the one loop) against a bare PyTorch loop doing the same
    optimiser steps and validations on the same preprocessed tensors, model, layout (channels-last) and batch
    size, in the same process, interleaved, after one untimed warm-up of each. The trial is a `finetune` trial of
    experiments/default.yaml's first image backbone on CIFAR-10 at the default's largest budget, with the
    default's training settings.
(b) `bench run experiments/smoke.yaml` wall time, in a fresh results folder each time but with warm caches
    (datasets, converted weights, features), after one untimed run that fills them.
(c) Cells per minute of experiments/default.yaml: its first dataset/backbone/budget group (every strategy), or
    the whole matrix with --full, in a fresh results folder with warm caches.

Medians of --repeats runs. Every figure, with the machine, threads and library versions, goes to
results/perf/harness.json.

    make perf            # or: .venv/bin/python benchmarks/harness.py --repeats 5 [--full]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import record  # benchmarks/record.py
import torch
import torch.nn.functional as F
import yaml

from bench import config, data, environment, paths
from bench import stores as run_stores
from bench.inputs import preprocessed
from bench.loop import batches_per_epoch, schedule
from bench.matrix import expand
from bench.tracking import Tracker
from bench.training_run import CellTrainer
from bench.tuning import TUNING_SEED, tune

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "experiments" / "default.yaml"


def trial_experiment(sampler_seed: int) -> config.Experiment:
    """A one-trial `finetune` cell with the default experiment's image backbone, budget and training settings."""
    default = yaml.safe_load(DEFAULT.read_text())
    image = next(b for b in default["backbones"] if data_modality(b) == "image")
    return config.parse(
        {
            "name": "perf_harness",
            "backbones": [image],
            "datasets": ["cifar10"],
            "strategies": ["finetune"],
            "budgets": [max(b for b in default["budgets"] if isinstance(b, int))],
            "seeds": 1,
            "tuning": {"n_trials": 1, "sampler_seed": sampler_seed},
            "training": default.get("training", {}),
            "splits": default.get("splits", {}),
        }
    )


def data_modality(backbone: dict | str) -> str:
    from bench import backbones

    return backbones.resolve(backbone if isinstance(backbone, str) else backbone["name"]).modality


def harness_trial(
    exp: config.Experiment, dataset: data.LoadedDataset, tracker: Tracker, storage: str
) -> tuple[float, list[int]]:
    """Seconds for a one-trial cell through tune(): its study, MLflow parent and trial runs, model and loop; and
    the steps at which the trial validated (0: its starting weights, when it stops early), read from MLflow."""
    cell = expand(exp)[0]
    start = time.perf_counter()
    trainer = CellTrainer(cell, exp, dataset)
    with tracker.cell_run(cell, {}):
        tune(trainer, tracker, storage)
    seconds = time.perf_counter() - start
    name = f"tags.mlflow.runName = '{cell.run_name}/trial0'"
    trial = tracker.mlflow.search_runs(filter_string=name, output_format="list")  # the newest first
    history = tracker.mlflow.MlflowClient().get_metric_history(trial[0].info.run_id, "val_acc")
    return seconds, sorted({m.step for m in history})


def bare_trial(
    exp: config.Experiment, dataset: data.LoadedDataset, template: torch.nn.Module, validations: list[int]
) -> float:
    """Seconds for the same steps and validations (``validations``, as the harness's trial took them) in a plain
    loop with warm-up and cosine decay, on the same tensors, model and batch size; copying the weights at each
    validation, as early stopping keeps its best."""
    trainer = CellTrainer(expand(exp)[0], exp, dataset)
    split, t = trainer.split(TUNING_SEED), exp.training
    bb = template.backbone
    # in the layout the harness's backbone convolves in (channels-last), converted once rather than per batch
    layout = bb.memory_format
    x_train = preprocessed(bb, dataset.train_items, split.train, dataset.manifest, "train")
    x_val = preprocessed(bb, dataset.train_items, split.val, dataset.manifest, "train")
    x_train, x_val = x_train.contiguous(memory_format=layout), x_val.contiguous(memory_format=layout)
    y_train = torch.from_numpy(dataset.train_labels[split.train])
    y_val = torch.from_numpy(dataset.train_labels[split.val])
    plan = schedule(len(split.train), t.batch_size, t.epochs, t.steps, t.min_steps, t.evaluations, t.max_steps)
    steps = max(validations)

    def validate() -> None:
        model.eval()
        with torch.no_grad():
            val = [model(x_val[c]).argmax(1) for c in torch.arange(len(y_val)).split(t.batch_size)]
        float((torch.cat(val) == y_val).float().mean())
        {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.train()

    start = time.perf_counter()
    model = copy.deepcopy(template)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=True)  # as bench.loop
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, 1 / (t.warmup_steps + 1), 1.0, total_iters=t.warmup_steps)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=plan.steps - t.warmup_steps)
    lr_schedule = torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[t.warmup_steps])
    n_batches = batches_per_epoch(len(y_train), t.batch_size)
    if 0 in validations:
        validate()
    step = 0
    while step < steps:
        model.train()
        for chunk in torch.randperm(len(y_train)).tensor_split(n_batches):
            loss = F.cross_entropy(model(x_train[chunk]), y_train[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_schedule.step()
            step += 1
            loss.item()
            if step in validations:
                validate()
            if step == steps:
                break
    return time.perf_counter() - start


def smoke_run(cache: Path) -> float:
    """Seconds for `bench run experiments/smoke.yaml` in a fresh results folder with the given caches."""
    with tempfile.TemporaryDirectory() as results:
        env = {**os.environ, paths.RESULTS_ENV: results, paths.CACHE_ENV: str(cache)}
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "bench", "run", str(ROOT / "experiments" / "smoke.yaml")],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def default_cells_per_minute(cache: Path, full: bool) -> dict:
    """Cells per minute of the default matrix (its first group, or all of it), fresh stores, warm caches."""
    default = yaml.safe_load(DEFAULT.read_text())
    if not full:
        first = next(b for b in default["backbones"] if data_modality(b) == "image")
        default |= {"backbones": [first], "datasets": ["cifar10"], "budgets": default["budgets"][:1]}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "perf_default.yaml"
        file.write_text(yaml.safe_dump(default))
        env = {**os.environ, paths.RESULTS_ENV: str(Path(tmp) / "results"), paths.CACHE_ENV: str(cache)}
        cells = len(expand(config.load(file)))
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "bench", "run", str(file)], env=env, check=True, stdout=subprocess.DEVNULL
        )
        seconds = time.perf_counter() - start
    what = "the whole matrix" if full else "its first group (cifar10, first image backbone, first budget)"
    return {
        "what": f"experiments/default.yaml, {what}",
        "cells": cells,
        "seconds": seconds,
        "cells_per_minute": 60 * cells / seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--full", action="store_true", help="(c) over the whole default matrix (about 20 minutes)")
    args = p.parse_args()
    cache = paths.cache_dir("datasets").parent.resolve()  # decoded data, weights, features: shared with runs
    dataset = data.DATASETS.get("cifar10").load()
    exp = trial_experiment(0)
    threads = environment.set_threads(exp.training.threads)  # as every training run of the default
    template = CellTrainer(expand(exp)[0], exp, dataset).build_model(TUNING_SEED)
    with (
        tempfile.TemporaryDirectory() as stores,  # fresh MLflow and Optuna stores, so every study is new
        mock.patch.dict(os.environ, {paths.RESULTS_ENV: stores, paths.CACHE_ENV: str(cache)}),
    ):
        where = run_stores.resolve(exp)  # the stores, decided once, as a run does
        run_stores.prepare(where.tracking, where.optuna)
        tracker = Tracker(where.tracking, exp.name)  # once per experiment, as in a run
        _, validations = harness_trial(trial_experiment(1_000), dataset, tracker, where.optuna)  # warm-up
        bare_trial(exp, dataset, template, validations)
        harness, bare, taken = [], [], []
        for i in range(args.repeats):
            seconds, validations = harness_trial(trial_experiment(i + 1), dataset, tracker, where.optuna)
            harness.append(seconds)
            bare.append(bare_trial(exp, dataset, template, validations))
            taken.append(max(validations))
    ratio = statistics.median(h / b for h, b in zip(harness, bare, strict=True))
    steps = statistics.median(taken)

    smoke_run(cache)  # fills the caches, untimed
    smoke = [smoke_run(cache) for _ in range(max(3, args.repeats // 2))]
    cells = default_cells_per_minute(cache, args.full)

    result = {
        "threads": threads,
        "repeats": args.repeats,
        "trial": {
            "what": f"finetune trial, cifar10, {exp.backbones[0].label}, {exp.budgets[0]}/class, {steps} steps",
            "harness_s_median": statistics.median(harness),
            "bare_loop_s_median": statistics.median(bare),
            "harness_to_bare_ratio_median": ratio,
            "harness_s": harness,
            "bare_loop_s": bare,
        },
        "smoke": {
            "what": "bench run experiments/smoke.yaml, fresh stores, warm caches",
            "seconds_median": statistics.median(smoke),
            "seconds": smoke,
        },
        "default": cells,
    }
    out = record.write("harness", result)
    print(f"{result['trial']['what']}, {args.repeats} repeats, {threads} threads (medians):")
    print(f"  through the harness: {result['trial']['harness_s_median']:.2f} s")
    print(f"  bare PyTorch loop:   {result['trial']['bare_loop_s_median']:.2f} s")
    print(f"  harness / bare:      {ratio:.3f}")
    print(f"make smoke (warm caches, fresh stores): {result['smoke']['seconds_median']:.1f} s (median of {len(smoke)})")
    print(
        f"{cells['what']}: {cells['cells']} cells in {cells['seconds']:.0f} s, "
        f"{cells['cells_per_minute']:.1f} cells/min   ({out})"
    )


if __name__ == "__main__":
    main()
