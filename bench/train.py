"""The one training and evaluation loop every strategy runs through. Reads top to bottom."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class Batches:
    """Mini-batches of ``items[indices]`` with their labels, preprocessed on the fly.

    Training batches are reshuffled every epoch by ``seed`` + epoch and split evenly
    (never a last batch of one example, which BatchNorm cannot train on).
    """

    items: Sequence[Any] | torch.Tensor
    labels: np.ndarray
    indices: np.ndarray
    batch_size: int
    preprocess: Callable[[Any], Any]
    device: torch.device

    def __call__(self, shuffle_seed: int | None = None) -> Iterator[tuple[Any, torch.Tensor]]:
        order = self.indices
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(order)
        for chunk in np.array_split(order, max(1, math.ceil(len(order) / self.batch_size))):
            if isinstance(self.items, torch.Tensor):
                x = self.preprocess(self.items[torch.from_numpy(chunk)])
            elif isinstance(self.items, np.ndarray):
                x = self.preprocess(self.items[chunk])
            else:
                x = self.preprocess([self.items[i] for i in chunk])
            yield to_device(x, self.device), torch.from_numpy(self.labels[chunk]).to(self.device)

    def __len__(self) -> int:
        return len(self.indices)


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, dict):
        return {k: v.to(device) for k, v in x.items()}
    return x.to(device)


@torch.no_grad()
def predict(model: nn.Module, batches: Batches) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels over all batches, in eval mode."""
    model.eval()
    preds, labels = [], []
    for x, y in batches():
        preds.append(model(x).argmax(dim=1).cpu())
        labels.append(y.cpu())
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def accuracy(model: nn.Module, batches: Batches) -> float:
    preds, labels = predict(model, batches)
    return float((preds == labels).mean())


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_acc: float


def fit(
    model: nn.Module,
    param_groups: list[dict[str, Any]],
    train: Batches,
    val: Batches,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
    extra_loss: Callable[[], torch.Tensor | None] = lambda: None,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
) -> list[EpochStats]:
    """Train with AdamW and a cosine schedule; validate after every epoch and hand the stats to ``on_epoch``.

    Parameter groups may carry their own ``lr``/``weight_decay``; ``on_epoch`` may raise to stop early
    (Optuna pruning). Raises ``DivergedError`` as soon as the loss is not finite.
    """
    optimizer = torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(train) / train.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    history = []
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in train(shuffle_seed=seed * 100_003 + epoch):
            loss = F.cross_entropy(model(x), y)
            penalty = extra_loss()
            if penalty is not None:
                loss = loss + penalty
            if not torch.isfinite(loss):
                raise DivergedError(
                    f"loss is {loss.item()} at epoch {epoch + 1}; the learning rate ({lr:.3g}) is likely too high"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(y)
            count += len(y)
        stats = EpochStats(epoch + 1, total / count, accuracy(model, val))
        history.append(stats)
        on_epoch(stats)
    return history
