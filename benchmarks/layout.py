"""Benchmark: the cost of a step and of an evaluation, in each memory layout, through the harness.

(a) Training: a `finetune` run of experiments/default.yaml's image backbone (MobileNetV2 at 64 px) on CIFAR-10 through
    the harness (``CellTrainer.run``: the model from the in-memory pretrained copy, the one loop), with NCHW
    convolutions (PyTorch's default layout, the path before channels-last) and with channels-last (the default),
    interleaved; seconds per optimiser step.
(b) Evaluation: ``predict`` over 2,000 CIFAR-10 test images with the same model: the path before (NCHW, in batches
    of the training batch size, BatchNorm as it is) against the harness's now (channels-last, BatchNorm folded into
    the convolutions, in batches of ``EVAL_BATCH_SIZE``); each step alone at the training batch size (the layout;
    the layout and folding); and the harness's path at other batch sizes. The folding itself (a copy of the model,
    made once per trained model) is inside the time, as in the harness.

Medians of --repeats, one torch thread (as every training run of the default), on whatever else the machine runs:
time it on an idle machine. Figures go to results/perf/layout.json.

    make perf            # or: .venv/bin/python benchmarks/layout.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import numpy as np
import record  # benchmarks/record.py
import yaml
from harness import DEFAULT, data_modality  # benchmarks/harness.py

from bench import config, data, environment
from bench.inputs import preprocessed
from bench.loop import Batches, predict
from bench.matrix import expand
from bench.training_run import EVAL_BATCH_SIZE, CellTrainer

LAYOUTS = ("nchw", "channels_last")
STEPS = (8, 24)  # two run lengths: their difference is the cost of the steps alone (no set-up, no validation)
EVAL_IMAGES = 2000


def experiment(steps: int) -> config.Experiment:
    default = yaml.safe_load(DEFAULT.read_text())
    image = next(b for b in default["backbones"] if data_modality(b) == "image")
    training = {**default.get("training", {}), "evaluations": 1}
    for key in ("epochs", "min_steps", "max_steps", "patience"):
        training.pop(key, None)
    return config.parse(
        {
            "name": "perf_layout",
            "backbones": [image],
            "datasets": ["cifar10"],
            "strategies": ["finetune"],
            "budgets": [100],
            "seeds": 1,
            "training": {**training, "steps": steps},
            "splits": default.get("splits", {}),
        }
    )


def in_layout(layout: str, fold: bool = False):
    """CellTrainer building its models in ``layout`` (channels-last is what TimmBackbone does by default), their
    BatchNorms folded for evaluation or not (TimmBackbone folds them by default)."""
    build = CellTrainer.build_model

    def build_in(self, seed):
        model = build(self, seed)
        model.backbone.channels_last(layout == "channels_last")
        model.backbone.fold_batchnorm = fold
        return model

    return mock.patch.object(CellTrainer, "build_model", build_in)


def run_seconds(trainer: CellTrainer, layout: str) -> float:
    with in_layout(layout, fold=layout == "channels_last"):  # the path before, and the harness's now
        return trainer.run({"lr": 3e-4, "weight_decay": 1e-4}, seed=0).seconds


def eval_seconds(trainer: CellTrainer, layout: str, batch_size: int, fold: bool = False) -> float:
    ds = trainer.dataset
    with in_layout(layout, fold):
        model = trainer.build_model(0)
    index = np.arange(min(EVAL_IMAGES, len(ds.test_labels)))
    inputs = preprocessed(model.backbone, ds.test_items, index, ds.manifest, "test")
    batches = Batches(inputs, ds.test_labels[index], np.arange(len(index)), batch_size, lambda x: x, trainer.device)
    start = time.perf_counter()
    predict(model, batches)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    threads = environment.set_threads(1)
    dataset = data.DATASETS.get("cifar10").load()
    trainers = {s: CellTrainer(expand(experiment(s))[0], experiment(s), dataset) for s in STEPS}
    batch = trainers[STEPS[0]].exp.training.batch_size
    # evaluation paths: (layout, BatchNorm folded, batch size)
    paths = {
        "before": ("nchw", False, batch),
        "layout": ("channels_last", False, batch),
        "layout_folded": ("channels_last", True, batch),
        "now": ("channels_last", True, max(batch, EVAL_BATCH_SIZE)),
    }
    now = paths["now"][2]  # the other batch sizes beside it, not that one measured twice
    paths |= {f"now_batch_{size}": ("channels_last", True, size) for size in sorted({batch, 32, 64, 128} - {now})}
    for layout in LAYOUTS:  # untimed warm-up: pretrained weights read, inputs preprocessed, kernels chosen
        run_seconds(trainers[STEPS[0]], layout)
    for layout, fold, size in paths.values():
        eval_seconds(trainers[STEPS[0]], layout, size, fold)
    step = {layout: [] for layout in LAYOUTS}
    images = {name: [] for name in paths}
    for _ in range(args.repeats):
        for layout in LAYOUTS:
            short, long = (run_seconds(trainers[s], layout) for s in STEPS)
            step[layout].append((long - short) / (STEPS[1] - STEPS[0]))
        for name, (layout, fold, size) in paths.items():
            images[name].append(EVAL_IMAGES / eval_seconds(trainers[STEPS[0]], layout, size, fold))
    median = {k: statistics.median(v) for k, v in step.items()}
    rate = {k: statistics.median(v) for k, v in images.items()}
    result = {
        "threads": threads,
        "repeats": args.repeats,
        "what": f"finetune, cifar10, {trainers[STEPS[0]].cell.backbone.label}, batch {batch}",
        "train_step_s": step,
        "train_step_s_median": median,
        "train_speedup_channels_last": median["nchw"] / median["channels_last"],
        "eval_paths": {name: {"layout": p[0], "batchnorm_folded": p[1], "batch": p[2]} for name, p in paths.items()},
        "eval_images_per_s": images,
        "eval_images_per_s_median": rate,
        "eval_speedup_over_before": {name: r / rate["before"] for name, r in rate.items()},
    }
    out = record.write("layout", result)
    print(f"{result['what']}, {args.repeats} repeats, {threads} thread (medians):")
    print(f"  training step: NCHW {1e3 * median['nchw']:.0f} ms, channels-last {1e3 * median['channels_last']:.0f} ms")
    print(f"  channels-last / NCHW speed-up: {result['train_speedup_channels_last']:.2f}x")
    print(f"  evaluation, images/s, and speed-up over the path before (NCHW, BatchNorm as it is, batch {batch}):")
    for name, (layout, fold, size) in paths.items():
        how = f"{layout}, {'BatchNorm folded' if fold else 'BatchNorm as it is'}, batch {size}"
        print(f"    {name:14s} {rate[name]:6.0f}  {result['eval_speedup_over_before'][name]:.2f}x  ({how})")
    print(f"  ({out})")


if __name__ == "__main__":
    main()
