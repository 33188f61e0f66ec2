"""One training run of a cell: split for the seed, model from the backbone, strategy prepares, the loop trains."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from bench import backbones
from bench.backbones.base import Classifier
from bench.config import Experiment
from bench.data import LoadedDataset, Split, make_split
from bench.features import cached_features, weights_digest
from bench.inputs import preprocessed
from bench.loop import Batches, EvalStats, accuracy, best, fit, predict, schedule
from bench.matrix import Cell
from bench.probe import ProbeFit, cv_C, fit_probe, load_into
from bench.strategies import STRATEGIES, Hyperparameters, Strategy
from bench.strategies.base import penalty

HEAD_SEED = 1_000_003  # the head's init follows the seed alone, however the backbone was built
# Evaluation (validation, test, features of a frozen backbone) in batches of at least this many. MobileNetV2 at 64 px
# in channels-last with its BatchNorms folded, one thread, `predict` over 2,000 CIFAR-10 images (2026-12-07, medians
# of 8 interleaved repeats): 977 images/s at 64, 877 at 32, 728 at 16; in two runs of benchmarks/layout.py 64 beat 32
# again (1,093 against 1,050; 932 against 923) and 128 was slower (860, 683). The machine is noisy: `make perf`
# measures it again.
EVAL_BATCH_SIZE = 64


def min_delta(configured: float | str, n_val: int) -> float:
    """``training.min_delta`` as a number: "binomial" is one standard error of a 50 % accuracy on ``n_val``
    validation examples."""
    if configured == "binomial":
        return 0.5 / math.sqrt(n_val) if n_val else 0.0
    return float(configured)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def split_of(exp: Experiment, dataset: LoadedDataset, budget: int | str, seed: int, holds_out: bool = True) -> Split:
    """The examples a run of ``exp`` at ``budget`` and ``seed`` trains, validates and tests on (``holds_out``: the
    strategy validates on a hold-out from its budget; else it trains on all of it)."""
    splits = exp.splits
    return make_split(
        dataset.train_labels,
        dataset.test_labels,
        budget,
        seed,
        holds_out=holds_out,
        extra_val_per_class=splits.extra_val_per_class,
        test_per_class=splits.test_per_class,
        dataset=dataset.name,
        val_fraction=splits.val_fraction,
        min_val_per_class=splits.min_val_per_class,
    )


@dataclass
class RunResult:
    model: Classifier = field(repr=False)
    history: list[EvalStats]
    val_acc: float  # of the weights the run ends with: its last validation, or its best with early stopping
    steps: int  # optimiser steps the loop took (0 when the probe is the whole training)
    best_step: int  # the step whose weights the run ends with
    seconds: float  # the run's wall time: model, probe, loop and test
    probe: ProbeFit | None = field(default=None, repr=False)
    test_acc: float | None = None
    test_index: np.ndarray | None = field(default=None, repr=False)  # positions in the dataset's test split
    test_pred: np.ndarray | None = field(default=None, repr=False)
    test_true: np.ndarray | None = field(default=None, repr=False)
    diagnostics: dict[str, float] = field(default_factory=dict)  # the penalty's gradient ratios, the probe's C

    def cost(self) -> dict[str, float]:
        """What the run spent and kept, for MLflow: optimiser steps, the step of the weights it ended with, wall
        seconds, how the linear probe converged when it had one, and the diagnostics (a penalty's gradient ratio,
        the probe's cross-validated C)."""
        spent = {"steps": self.steps, "best_step": self.best_step, "seconds": round(self.seconds, 2)}
        spent |= self.diagnostics
        if self.probe is None:
            return spent
        return {**spent, "probe_iterations": self.probe.iterations, "probe_converged": self.probe.converged}


class CellTrainer:
    """Trains one cell's model for given hyperparameters and seed; used by tuning and by the final seeds."""

    def __init__(
        self, cell: Cell, exp: Experiment, dataset: LoadedDataset, say: Callable[[str], None] = lambda msg: None
    ) -> None:
        self.cell = cell
        self.exp = exp
        self.dataset = dataset
        self.say = say  # progress messages for long steps (feature extraction)
        self.strategy: type[Strategy] = STRATEGIES.get(cell.strategy)  # each run trains a fresh instance of it
        self.device = pick_device(exp.training.device)
        self.reuse_weights = True  # start runs from an in-memory copy of the pretrained weights
        self._digest: str | None = None
        self._swept: dict[int, tuple[float, float]] = {}  # seed -> the probe's C by cross-validation, its accuracy
        # the best untested run so far (a trial's): a final seed with its seed and hyperparameters tests it instead
        # of training it again, since the same seed, split, init and shuffling train the same weights
        self._kept: tuple[tuple[int, str], RunResult, nn.Module, dict[str, Batches]] | None = None

    def split(self, seed: int) -> Split:
        return split_of(self.exp, self.dataset, self.cell.budget, seed, self.strategy.holds_out)

    def validates(self) -> bool:
        """Whether this cell's runs have validation examples to choose trials and steps on (the same at every
        seed: the hold-out's size follows the budget alone)."""
        return len(self.split(0).val) > 0

    def build_model(self, seed: int) -> Classifier:
        """The backbone (pretrained, or random init from ``seed``) with a new linear head initialised from ``seed``."""
        torch.manual_seed(seed)
        bb = self.cell.backbone
        backbone = backbones.build(
            bb.name, self.strategy.pretrained, bb.weights, reuse=self.reuse_weights, **bb.options()
        )
        torch.manual_seed(HEAD_SEED + seed)
        return Classifier(backbone, len(self.dataset.classes)).to(self.device)

    def _parts(self, split: Split) -> dict[str, tuple]:
        ds = self.dataset
        return {
            "train": (ds.train_items, ds.train_labels, split.train, "train"),
            "val": (ds.train_items, ds.train_labels, split.val, "train"),
            "test": (ds.test_items, ds.test_labels, split.test, "test"),
        }

    def _input_batches(self, model: Classifier, split: Split) -> dict[str, Batches]:
        """Batches of preprocessed inputs, computed once per example in this process (no "val" without a hold-out)."""
        bb, batches = model.backbone, {}
        for p, (x, y, i, pool) in self._parts(split).items():
            if not len(i):
                continue
            inputs = preprocessed(bb, x, i, self.dataset.manifest, pool)
            batches[p] = Batches(inputs, y[i], np.arange(len(i)), self._batch_size(p), bb.collate, self.device)
        return batches

    def _feature_batches(self, model: Classifier, split: Split) -> dict[str, Batches]:
        """Batches of the frozen backbone's cached features, for training or probing the head alone."""
        batches = {}
        if self._digest is None:  # every run starts from the same pretrained weights: hash them once
            self._digest = weights_digest(model.backbone)
        for p, (x, y, i, pool) in self._parts(split).items():
            if not len(i):
                continue
            feats = cached_features(
                model.backbone,
                x,
                y,
                i,
                self.dataset.manifest,
                pool,
                self._batch_size("features"),
                self.device,
                lambda done, total, p=p: self.say(f"features of {p} examples {done}/{total}"),
                digest=self._digest,
            )
            # features are stored in index order: address them by position
            batches[p] = Batches(
                feats.to(self.device), y[i], np.arange(len(i)), self._batch_size(p), lambda f: f, self.device
            )
        return batches

    def _batch_size(self, part: str) -> int:
        """The training batch size for training batches; at least ``EVAL_BATCH_SIZE`` for anything evaluated."""
        size = self.exp.training_for(self.cell.dataset).batch_size
        return size if part == "train" else max(size, EVAL_BATCH_SIZE)

    def _probe(
        self, model: Classifier, split: Split, seed: int, fits: list[ProbeFit]
    ) -> Callable[[float | None], None]:
        """``probe(C)``: fit the head as a converged logistic regression on the frozen backbone's features of the
        training examples; ``probe(None)`` chooses ``C`` by cross-validation over those examples (``cv_C``, once
        per seed), so the probe spends no validation example."""

        def probe(C: float | None) -> None:
            train = self._feature_batches(model, split)["train"]
            train_xy = (train.items, torch.from_numpy(train.labels))
            if C is None and seed not in self._swept:
                self._swept[seed] = cv_C(*train_xy, len(self.dataset.classes))
            fit = fit_probe(*train_xy, len(self.dataset.classes), self._swept[seed][0] if C is None else C)
            load_into(model.head, fit)
            fits.append(fit)

        return probe

    def run(
        self,
        hp: Hyperparameters,
        seed: int,
        test: bool = False,
        on_eval: Callable[[EvalStats], None] = lambda s: None,
    ) -> RunResult:
        """Train at ``seed`` (split, init and shuffling) with ``hp``; evaluate on the test split if ``test``.

        The strategy's ``before_fit`` may probe the head; when it leaves no parameter to train (a linear probe),
        the loop does not run at all. A test run whose seed and hyperparameters are those of the best run so far
        without a test (the best trial: trials train at the final seed 0) tests that run's weights instead of
        training the same weights again.
        """
        start = time.perf_counter()
        same = (seed, json.dumps(hp, sort_keys=True))
        if test and self._kept is not None and self._kept[0] == same:
            _, result, module, batches = self._kept
            self._kept = None
        else:
            result, module, batches = self._train(hp, seed, on_eval)
            if not test and (self._kept is None or result.val_acc > self._kept[1].val_acc):
                self._kept = (same, result, module, batches)
        if test:
            result.test_index = self.split(seed).test
            result.test_pred, result.test_true = predict(module, batches["test"])
            result.test_acc = float((result.test_pred == result.test_true).mean())
        result.seconds += time.perf_counter() - start
        return result

    def _train(
        self, hp: Hyperparameters, seed: int, on_eval: Callable[[EvalStats], None]
    ) -> tuple[RunResult, nn.Module, dict[str, Batches]]:
        """One training run: the result, the module that predicts (the head alone on cached features when the
        backbone is frozen) and the batches it reads."""
        split, fits, diagnostics = self.split(seed), [], {}
        strategy = self.strategy()  # a fresh instance: what it keeps in ``param_groups`` ends with this run
        draws = seed + strategy.seed_offset  # initialisation and shuffling (the split follows ``seed``)
        model = self.build_model(draws)
        strategy.before_fit(model, hp, self._probe(model, split, seed, fits))
        groups = [{**g, "params": list(g["params"])} for g in strategy.param_groups(model, hp)]
        if self.strategy.frozen_backbone:  # the backbone never changes: the head works on cached features
            module, batches = model.head, self._feature_batches(model, split)
        else:
            module, batches = model, self._input_batches(model, split)
        history = []
        if any(g["params"] for g in groups):
            training = self.exp.training_for(self.cell.dataset)
            n_train, bs = len(split.train), training.batch_size
            plan = schedule(
                n_train,
                bs,
                training.epochs,
                training.steps,
                training.min_steps,
                training.evaluations,
                training.max_steps,
                self.strategy.step_scale,
            )
            warmup = min(training.warmup_steps, plan.steps - 1)
            # random weights have no statistics worth keeping: a network trained from scratch always learns its own
            batchnorm = training.batchnorm if self.strategy.pretrained else "train"
            batchnorm = self.strategy.batchnorm or batchnorm
            val = batches.get("val")
            patience = training.patience if val is not None else None  # nothing to stop on: the fixed schedule
            plan = replace(
                plan,
                patience=patience,
                warmup=warmup,
                batchnorm=batchnorm,
                monitor=training.monitor,
                min_delta=min_delta(training.min_delta, len(split.val)),
            )
            history = fit(
                module,
                groups,
                batches["train"],
                val,
                plan,
                lr=hp["lr"],
                weight_decay=hp["weight_decay"],
                seed=draws,
                extra_loss=penalty(strategy, model, hp),
                on_eval=on_eval,
                diagnostics=diagnostics,
            )
            kept = best(history, plan) if plan.patience is not None else history[-1]
            val_acc, steps, best_step = kept.val_acc, history[-1].step, kept.step
        elif "val" in batches:
            val_acc, steps, best_step = accuracy(module, batches["val"]), 0, 0
        else:  # a probe without a hold-out: its cross-validated accuracy
            val_acc, steps, best_step = self._swept.get(seed, (None, math.nan))[1], 0, 0
        if seed in self._swept:
            diagnostics["probe_C"] = self._swept[seed][0]
        probe = fits[-1] if fits else None
        result = RunResult(model, history, val_acc, steps, best_step, 0.0, probe, diagnostics=diagnostics)
        return result, module, batches
