"""Benchmark: can any plain fine-tuning recipe beat the converged linear probe, outside the harness?

A bare PyTorch loop (AdamW, linear warm-up then cosine, cross-entropy, a validation every 25 steps, the best
validated weights kept) fine-tunes the whole network on exactly the data and model a harness run sees: the split
of seed S (``bench.training_run.split_of``), the preprocessed inputs, the pretrained backbone with a new linear head
initialised from the seed. It crosses

- BatchNorm in train mode (batch statistics, running statistics updated) or frozen (running statistics, as
  pretrained),
- three learning rates,
- the head: new (as ``finetune``) or the converged probe's (as the second phase of ``lp_ft``),

and reports the test accuracy of the best validated weights and of the last step, beside the linear probe's (its
C chosen by cross-validation on the training examples, as ``feature_extraction``). The default case is CIFAR-10
with MobileNetV2 at 64 px and 100 examples per class, batches of 16, 300 steps (4.8 epochs), 20 per class to
validate drawn outside the budget (``splits.extra_val_per_class``, as before validation came out of the budget) and
100 per class to test. Results go to results/perf/finetune_recipes.json.

    .venv/bin/python benchmarks/finetune_recipes.py [--seeds 0 1] [--steps 300] [--lrs 1e-4 3e-4 1e-3]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import time

import record  # benchmarks/record.py
import torch
import torch.nn.functional as F

from bench import config, data, environment
from bench.loop import Batches, accuracy, training_mode
from bench.matrix import expand
from bench.training_run import CellTrainer


def experiment(args: argparse.Namespace) -> config.Experiment:
    return config.parse(
        {
            "name": "finetune_recipes",
            "backbones": [{"name": args.backbone, "input_size": args.input_size}],
            "datasets": [args.dataset],
            "strategies": ["finetune"],
            "budgets": [args.budget],
            "training": {"batch_size": args.batch_size},
            "splits": {"extra_val_per_class": args.val_per_class, "test_per_class": args.test_per_class},
        }
    )


def bare_fine_tune(
    model: torch.nn.Module,
    batches: dict[str, Batches],
    lr: float,
    batchnorm: str,
    steps: int,
    every: int,
    seed: int,
    head_lr_scale: float = 1.0,
) -> dict[str, float]:
    """The whole network trained for ``steps`` AdamW steps (weight decay 0.01, 10 warm-up steps, cosine to 0; the
    head's rate ``head_lr_scale`` times the backbone's); test accuracy of the best validated weights (the earliest
    on ties) and of the last step."""
    groups = [
        {"params": list(model.backbone.parameters())},
        {"params": list(model.head.parameters()), "lr": lr * head_lr_scale},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01)
    warmup = 10
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))),
    )
    train = batches["train"]
    best_val, best_step, best_weights = accuracy(model, batches["val"]), 0, copy.deepcopy(model.state_dict())
    step, epoch = 0, 0
    while step < steps:
        epoch += 1
        for x, y in train(shuffle_seed=seed * 1000 + epoch):
            training_mode(model, batchnorm)
            loss = F.cross_entropy(model.head(model.backbone(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % every == 0 or step == steps:
                val = accuracy(model, batches["val"])
                if val > best_val:
                    best_val, best_step, best_weights = val, step, copy.deepcopy(model.state_dict())
            if step == steps:
                break
    last_test = accuracy(model, batches["test"])
    model.load_state_dict(best_weights)
    test_best = accuracy(model, batches["test"])
    return {"best_val": best_val, "best_step": best_step, "test_best": test_best, "test_last": last_test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenetv2_100")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=25, help="validate every this many steps")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--heads", nargs="+", choices=["new", "probe"], default=["new", "probe"])
    parser.add_argument("--batchnorms", nargs="+", choices=["train", "frozen"], default=["train", "frozen"])
    parser.add_argument(
        "--head-lr-scales", type=float, nargs="+", default=[1.0], help="the head's learning rate over the backbone's"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    environment.set_threads(args.threads)
    exp = experiment(args)
    trainer = CellTrainer(expand(exp)[0], exp, data.DATASETS.get(args.dataset).load())
    rows = []
    for seed in args.seeds:
        split = trainer.split(seed)
        model = trainer.build_model(seed)
        batches = trainer._input_batches(model, split)  # the harness's own preprocessed inputs for this split
        new_head = copy.deepcopy(model.state_dict())
        trainer._probe(model, split, seed, [])(None)  # the probe, C by cross-validation
        probe = {"test": accuracy(model, batches["test"]), "C": trainer._swept[seed]}
        print(f"seed {seed}: linear probe (C={probe['C']:g}) test {probe['test']:.3f}", flush=True)
        probe_head = copy.deepcopy(model.state_dict())
        grid = itertools.product(args.heads, args.batchnorms, args.lrs, args.head_lr_scales)
        for head, batchnorm, lr, scale in grid:
            model.load_state_dict(new_head if head == "new" else probe_head)
            start = time.perf_counter()
            out = bare_fine_tune(model, batches, lr, batchnorm, args.steps, args.every, seed, scale)
            row = {"seed": seed, "head": head, "batchnorm": batchnorm, "lr": lr, "head_lr_scale": scale, **out}
            row |= {"probe_test": probe["test"], "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(
                f"  head {head:5} BN {batchnorm:6} lr {lr:.0e} (head x{scale:g}): test {out['test_best']:.3f} at its "
                f"best validation (step {out['best_step']}), {out['test_last']:.3f} at step {args.steps}; "
                f"{out['test_best'] - probe['test']:+.3f} against the probe ({row['seconds']} s)",
                flush=True,
            )
    print(record.write("finetune_recipes", {"settings": vars(args), "runs": rows}))


if __name__ == "__main__":
    main()
