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

    def __init__(self, cell: Cell, exp: Experiment, dataset: LoadedDataset) -> None:
        self.cell = cell
        self.exp = exp
        self.dataset = dataset
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

    def _inputs(self, model: Classifier, split: Split) -> tuple[torch.nn.Module, dict[str, Batches]]:
        """The module the loop trains and its batches: the whole model on raw items, or for a frozen
        backbone only the head, on cached features."""
        ds, bs = self.dataset, self.exp.training.batch_size
        parts = {
            "train": (ds.train_items, ds.train_labels, split.train),
            "val": (ds.train_items, ds.train_labels, split.val),
            "test": (ds.test_items, ds.test_labels, split.test),
        }
        if not self.strategy.frozen_backbone:
            pre = model.backbone.preprocess
            return model, {p: Batches(x, y, i, bs, pre, self.device) for p, (x, y, i) in parts.items()}
        batches = {}
        for p, (x, y, i) in parts.items():
            split_part = "test" if p == "test" else "train"
            feats = cached_features(model.backbone, x, y, i, ds.manifest, split_part, bs, self.device)
            # features are stored in index order: address them by position
            batches[p] = Batches(feats, y[i], np.arange(len(i)), bs, lambda f: f, self.device)
        return model.head, batches

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
        groups = self.strategy.param_groups(model, hp)
        module, batches = self._inputs(model, split)
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
