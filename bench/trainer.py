"""One training run of a cell: split for the seed, model from the backbone, strategy prepares, the loop trains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from bench import backbones
from bench.backbones.base import Classifier
from bench.config import Experiment
from bench.data import LoadedDataset, Split, make_split
from bench.features import cached_features
from bench.matrix import Cell
from bench.strategies import Hyperparameters, get_strategy
from bench.train import Batches, EpochStats, fit, predict


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class RunResult:
    model: Classifier = field(repr=False)
    history: list[EpochStats]
    val_acc: float
    test_acc: float | None = None
    test_pred: np.ndarray | None = field(default=None, repr=False)
    test_true: np.ndarray | None = field(default=None, repr=False)


class CellTrainer:
    """Trains one cell's model for given hyperparameters and seed; used by tuning and by the final seeds."""

    def __init__(
        self, cell: Cell, exp: Experiment, dataset: LoadedDataset, say: Callable[[str], None] = lambda msg: None
    ) -> None:
        self.cell = cell
        self.exp = exp
        self.dataset = dataset
        self.say = say  # progress messages for long steps (feature extraction)
        self.strategy = get_strategy(cell.strategy)
        self.spec = backbones.resolve(cell.backbone.name)
        self.device = pick_device(exp.training.device)

    def split(self, seed: int) -> Split:
        ds = self.dataset
        return make_split(
            ds.train_labels,
            ds.test_labels,
            self.cell.budget,
            seed,
            self.exp.splits.val_per_class,
            self.exp.splits.test_per_class,
            ds.name,
        )

    def build_model(self, seed: int) -> Classifier:
        torch.manual_seed(seed)
        bb = self.cell.backbone
        backbone = self.spec.build(pretrained=self.strategy.pretrained, weights=bb.weights, **bb.options())
        return Classifier(backbone, len(self.dataset.classes)).to(self.device)

    def _parts(self, split: Split) -> dict[str, tuple]:
        ds = self.dataset
        return {
            "train": (ds.train_items, ds.train_labels, split.train),
            "val": (ds.train_items, ds.train_labels, split.val),
            "test": (ds.test_items, ds.test_labels, split.test),
        }

    def _raw_batches(self, model: Classifier, split: Split) -> dict[str, Batches]:
        bs, pre = self.exp.training.batch_size, model.backbone.preprocess
        return {p: Batches(x, y, i, bs, pre, self.device) for p, (x, y, i) in self._parts(split).items()}

    def _feature_batches(self, model: Classifier, split: Split) -> dict[str, Batches]:
        """Batches of the frozen backbone's cached features, for training the head alone."""
        bs, batches = self.exp.training.batch_size, {}
        for p, (x, y, i) in self._parts(split).items():
            pool = "test" if p == "test" else "train"
            feats = cached_features(
                model.backbone,
                x,
                y,
                i,
                self.dataset.manifest,
                pool,
                bs,
                self.device,
                lambda done, total, p=p: self.say(f"features of {p} examples {done}/{total}"),
            )
            # features are stored in index order: address them by position
            batches[p] = Batches(feats.to(self.device), y[i], np.arange(len(i)), bs, lambda f: f, self.device)
        return batches

    def _probe(self, model: Classifier, split: Split, seed: int) -> Callable[[float, float], None]:
        """Train the head alone on cached features through the same loop (LP-FT's first phase)."""

        def probe(lr: float, weight_decay: float) -> None:
            batches = self._feature_batches(model, split)
            fit(
                model.head,
                [{"params": list(model.head.parameters())}],
                batches["train"],
                batches["val"],
                self.exp.training.epochs,
                lr=lr,
                weight_decay=weight_decay,
                seed=seed,
            )

        return probe

    def run(
        self,
        hp: Hyperparameters,
        seed: int,
        test: bool = False,
        on_epoch: Callable[[EpochStats], None] = lambda s: None,
    ) -> RunResult:
        """Train at ``seed`` (split, init and shuffling) with ``hp``; evaluate on the test split if ``test``."""
        split = self.split(seed)
        model = self.build_model(seed)
        self.strategy.before_fit(model, hp, self._probe(model, split, seed))
        groups = self.strategy.param_groups(model, hp)
        if self.strategy.frozen_backbone:  # the backbone never changes: train the head on cached features
            module, batches = model.head, self._feature_batches(model, split)
        else:
            module, batches = model, self._raw_batches(model, split)
        history = fit(
            module,
            groups,
            batches["train"],
            batches["val"],
            self.exp.training.epochs,
            lr=hp["lr"],
            weight_decay=hp["weight_decay"],
            seed=seed,
            extra_loss=lambda: self.strategy.extra_loss(model, hp),
            on_epoch=on_epoch,
        )
        result = RunResult(model, history, history[-1].val_acc)
        if test:
            result.test_pred, result.test_true = predict(module, batches["test"])
            result.test_acc = float((result.test_pred == result.test_true).mean())
        return result
