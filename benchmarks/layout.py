"""Benchmark: the cost of a step and of an evaluation, in each memory layout, through the harness.

(a) Training: a `finetune` run of experiments/default.yaml's image backbone (MobileNetV2 at 64 px) on CIFAR-10 through
    the harness (``CellTrainer.run``: the model from the in-memory pretrained copy, the one loop), with NCHW
    convolutions (PyTorch's default layout, the path before channels-last) and with channels-last (the default),
    interleaved; seconds per optimiser step.
(b) Evaluation: ``predict`` over 2,000 CIFAR-10 test images with the same model: the path before (NCHW, in batches
    of the training batch size) against the harness's now (channels-last, in batches of ``EVAL_BATCH_SIZE``); the
    layout alone at the training batch size; and channels-last at other batch sizes.

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


def in_layout(layout: str):
    """CellTrainer building its models in ``layout`` (channels-last is what TimmBackbone does by default)."""
    build = CellTrainer.build_model

    def build_in(self, seed):
        model = build(self, seed)
        model.backbone.channels_last(layout == "channels_last")
        return model

    return mock.patch.object(CellTrainer, "build_model", build_in)


def run_seconds(trainer: CellTrainer, layout: str) -> float:
    with in_layout(layout):
        return trainer.run({"lr": 3e-4, "weight_decay": 1e-4}, seed=0).seconds


def eval_seconds(trainer: CellTrainer, layout: str, batch_size: int) -> float:
    ds = trainer.dataset
    with in_layout(layout):
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
    for layout in LAYOUTS:  # untimed warm-up: pretrained weights read, inputs preprocessed, kernels chosen
        run_seconds(trainers[STEPS[0]], layout)
        eval_seconds(trainers[STEPS[0]], layout, batch)
    step = {layout: [] for layout in LAYOUTS}
    images = {layout: [] for layout in LAYOUTS}  # at the training batch size
    now = []  # channels-last at the harness's evaluation batch size
    sizes = sorted({batch, EVAL_BATCH_SIZE, 64, 128})
    by_size = {size: [] for size in sizes}
    for _ in range(args.repeats):
        for layout in LAYOUTS:
            short, long = (run_seconds(trainers[s], layout) for s in STEPS)
            step[layout].append((long - short) / (STEPS[1] - STEPS[0]))
            images[layout].append(EVAL_IMAGES / eval_seconds(trainers[STEPS[0]], layout, batch))
        now.append(EVAL_IMAGES / eval_seconds(trainers[STEPS[0]], "channels_last", max(batch, EVAL_BATCH_SIZE)))
        for size in sizes:
            by_size[size].append(EVAL_IMAGES / eval_seconds(trainers[STEPS[0]], "channels_last", size))
    median = {k: statistics.median(v) for k, v in step.items()}
    rate = {k: statistics.median(v) for k, v in images.items()}
    rate_now = statistics.median(now)
    result = {
        "threads": threads,
        "repeats": args.repeats,
        "what": f"finetune, cifar10, {trainers[STEPS[0]].cell.backbone.label}, batch {batch}",
        "train_step_s": step,
        "train_step_s_median": median,
        "train_speedup_channels_last": median["nchw"] / median["channels_last"],
        "eval_images_per_s": images,
        "eval_images_per_s_median": rate,
        "eval_speedup_channels_last": rate["channels_last"] / rate["nchw"],
        "eval_images_per_s_harness_now": now,
        "eval_speedup_harness_now_over_before": rate_now / rate["nchw"],
        "eval_images_per_s_by_batch_channels_last": {s: statistics.median(v) for s, v in by_size.items()},
    }
    out = record.write("layout", result)
    print(f"{result['what']}, {args.repeats} repeats, {threads} thread (medians):")
    print(f"  training step: NCHW {1e3 * median['nchw']:.0f} ms, channels-last {1e3 * median['channels_last']:.0f} ms")
    print(f"  channels-last / NCHW speed-up: {result['train_speedup_channels_last']:.2f}x")
    print(f"  evaluation at batch {batch}: NCHW {rate['nchw']:.0f} images/s, channels-last {rate['channels_last']:.0f}")
    print(f"  channels-last / NCHW speed-up: {result['eval_speedup_channels_last']:.2f}x")
    print(
        f"  evaluation now (channels-last, batch {max(batch, EVAL_BATCH_SIZE)}): {rate_now:.0f} images/s, "
        f"{result['eval_speedup_harness_now_over_before']:.2f}x the path before (NCHW, batch {batch})"
    )
    shown = ", ".join(f"{s}: {r:.0f}" for s, r in result["eval_images_per_s_by_batch_channels_last"].items())
    print(f"  channels-last evaluation by batch size (images/s): {shown}   ({out})")


if __name__ == "__main__":
    main()
