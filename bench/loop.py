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
    """Mini-batches of ``items[indices]`` with their labels, each passed through ``preprocess``.

    Training batches are reshuffled every epoch by ``seed`` + epoch and split evenly
    (never a last batch of one example, which BatchNorm cannot train on).
    """

    items: Sequence[Any] | torch.Tensor | dict[str, torch.Tensor]
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
            x = self.preprocess(rows(self.items, chunk))
            yield to_device(x, self.device), torch.from_numpy(self.labels[chunk]).to(self.device)

    def __len__(self) -> int:
        return len(self.indices)


def rows(items: Any, chunk: np.ndarray) -> Any:
    """``items[chunk]`` for a tensor, a dict of tensors (stored inputs), an array or a list."""
    if isinstance(items, torch.Tensor):
        return items[torch.from_numpy(chunk)]
    if isinstance(items, dict):
        return {k: rows(v, chunk) for k, v in items.items()}
    if isinstance(items, np.ndarray):
        return items[chunk]
    return [items[i] for i in chunk]


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


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> tuple[float, float]:
    """Accuracy and mean cross-entropy over all batches, in eval mode."""
    model.eval()
    correct, loss = 0, 0.0
    for x, y in batches():
        logits = model(x)
        correct += int((logits.argmax(dim=1) == y).sum())
        loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
    return correct / len(batches), loss / len(batches)


def accuracy(model: nn.Module, batches: Batches) -> float:
    return evaluate(model, batches)[0]


@dataclass(frozen=True)
class Schedule:
    """How long a training run lasts, in optimiser steps, where it validates, and when it stops early.

    ``steps`` optimiser steps at most, with validation after ``evaluations`` evenly spaced steps (the last one
    included); Optuna's pruner sees one report per validation. The learning rate warms up linearly over
    ``warmup`` steps, then decays along a cosine to zero at ``steps``. With ``patience``, the run also validates
    before its first step, stops once ``patience`` validations in a row have not beaten the best one, and ends
    holding the weights of its best validation (the earliest, on ties). "Best" is by ``monitor``: the highest
    validation accuracy, or the lowest validation cross-entropy, by more than ``min_delta``. Validations count
    towards patience after the warm-up, and once the run has beaten its starting weights: a run still at its start
    (random weights on a plateau, LP-FT's probe not yet improved on) has not stalled, it has not begun, and takes all
    its steps. With ``batchnorm="frozen"`` BatchNorm layers keep the statistics they start with (their scale and
    shift still train).
    """

    steps: int
    evaluations: int
    patience: int | None = None
    warmup: int = 0
    batchnorm: str = "train"  # "frozen": BatchNorm layers normalise with their running statistics, never update them
    monitor: str = "val_acc"  # or "val_loss"
    min_delta: float = 0.0  # a validation is better only by more than this (accuracy, or cross-entropy in nats)

    def better(self, new: EvalStats, kept: EvalStats) -> bool:
        """Whether validation ``new`` beats the kept one by ``monitor`` and ``min_delta``."""
        if self.monitor == "val_loss":
            return new.val_loss < kept.val_loss - self.min_delta
        return new.val_acc > kept.val_acc + self.min_delta

    def eval_steps(self) -> list[int]:
        n = max(1, min(self.evaluations, self.steps))
        return sorted({round(self.steps * i / n) for i in range(1, n + 1)})


def schedule(
    n_train: int,
    batch_size: int,
    epochs: int,
    steps: int | None = None,
    min_steps: int | None = None,
    evaluations: int = 10,
    max_steps: int | None = None,
    scale: int = 1,
) -> Schedule:
    """The run's length from the config: ``steps`` exactly when given, else ``epochs`` over ``n_train`` examples,
    raised to ``min_steps`` and capped at ``max_steps``; times ``scale`` (a strategy that starts from random
    weights trains longer); ``evaluations`` validations, evenly spaced."""
    per_epoch = batches_per_epoch(n_train, batch_size)
    total = steps if steps is not None else max(epochs * per_epoch, min_steps or 0)
    if steps is None and max_steps is not None:
        total = min(total, max_steps)
    return Schedule(total * scale, evaluations)


def learning_rates(optimizer: torch.optim.Optimizer, plan: Schedule) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up from ``lr / (warmup + 1)`` over ``plan.warmup`` steps, then cosine decay to zero at
    ``plan.steps``."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, plan.steps - plan.warmup))
    if plan.warmup == 0:
        return cosine
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, 1 / (plan.warmup + 1), 1.0, total_iters=plan.warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[plan.warmup])


def batches_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


@dataclass(frozen=True)
class EvalStats:
    step: int  # optimiser steps so far
    epoch: float  # passes over the training examples so far
    train_loss: float  # mean training loss since the previous validation
    val_acc: float  # NaN when the run has no validation examples
    val_loss: float = math.nan  # mean cross-entropy on the validation examples


@dataclass(frozen=True)
class Step:
    """What one training step computed, as a strategy's ``extra_loss`` sees it (after the forward pass, before
    the backward pass): the batch, the backbone's features of it (``(batch, feature_dim)``, part of the graph,
    so a penalty on them trains the backbone), the head's logits, the labels and the step's number (from 0)."""

    inputs: Any
    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    number: int


def forward(model: nn.Module, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and logits of a batch: through ``model.backbone`` then ``model.head`` for a classifier; for a head
    trained alone on cached features, the features are the batch itself."""
    if hasattr(model, "backbone") and hasattr(model, "head"):
        features = model.backbone(x)
        return features, model.head(features)
    return x, model(x)


def fit(
    model: nn.Module,
    param_groups: list[dict[str, Any]],
    train: Batches,
    val: Batches | None,
    plan: Schedule,
    lr: float,
    weight_decay: float,
    seed: int,
    extra_loss: Callable[[Step], torch.Tensor | None] = lambda step: None,
    on_eval: Callable[[EvalStats], None] = lambda stats: None,
    diagnostics: dict[str, float] | None = None,
) -> list[EvalStats]:
    """Train with AdamW, warm-up and cosine decay for at most ``plan.steps`` steps, validating at
    ``plan.eval_steps()``; return the validations.

    Each step, in this order: forward (features, then logits), cross-entropy plus ``extra_loss(step)``,
    backward, optimiser step. Parameter groups may carry their own ``lr``/``weight_decay``; ``on_eval`` may raise
    to stop early (Optuna pruning). Raises ``DivergedError`` as soon as the loss is not finite. With
    ``plan.patience`` the first validation is of the starting weights (step 0, not passed to ``on_eval``), and the
    model ends holding the weights of ``best(history, plan)``. Without validation examples (``val`` None or
    empty) the run takes all its steps and keeps its last weights; its history has the training loss only.
    With a penalty, ``diagnostics`` receives ``penalty_grad_ratio_first`` and ``_last``: the norm of the penalty's
    gradient over the cross-entropy's, at the first step and at the last validated one, so a user sees whether
    the regulariser acted.
    """
    param_groups = [{**g, "params": list(g["params"])} for g in param_groups]  # generators are read once
    params = [p for g in param_groups for p in g["params"]]
    # the fused kernel updates all tensors in one pass: a sixth of a MiniLM step on CPU, same arithmetic
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    optimizer = torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, fused=fused)
    lr_schedule = learning_rates(optimizer, plan)
    per_epoch = batches_per_epoch(len(train), train.batch_size)
    validated = val is not None and len(val) > 0
    evals, history = plan.eval_steps(), []
    kept, saved, waited = None, None, 0  # with patience: the best validation so far, its weights, validations since
    if plan.patience is not None and validated:
        kept, saved = EvalStats(0, 0.0, math.nan, *evaluate(model, val)), _copy_of(model)
        history.append(kept)
    step, epoch, total, count = 0, 0, 0.0, 0
    while step < plan.steps and waited != plan.patience:
        training_mode(model, plan.batchnorm)
        for x, y in train(shuffle_seed=seed * 100_003 + epoch):
            features, logits = forward(model, x)
            measure = diagnostics if step == 0 or step + 1 in evals else None  # the penalty's gradient ratio
            total += _step(optimizer, Step(x, features, logits, y, step), extra_loss, lr, params, measure)
            lr_schedule.step()
            step += 1
            count += len(y)
            if step in evals:
                measured = evaluate(model, val) if validated else (math.nan, math.nan)
                stats = EvalStats(step, round(step / per_epoch, 3), total / count, *measured)
                total, count = 0.0, 0
                history.append(stats)
                on_eval(stats)
                if kept is not None:
                    kept, waited = patience_step(plan, kept, stats, waited)
                    if kept is stats:
                        saved = _copy_of(model)
                training_mode(model, plan.batchnorm)
            if step == plan.steps or waited == plan.patience:
                break
        epoch += 1
    if kept is not None and kept is not history[-1]:
        model.load_state_dict(saved)
    return history


def _step(
    optimizer: torch.optim.Optimizer,
    step: Step,
    extra_loss: Callable[[Step], torch.Tensor | None],
    lr: float,
    params: list[torch.Tensor],
    diagnostics: dict[str, float] | None,
) -> float:
    """One optimiser step on what the forward pass computed: cross-entropy plus ``extra_loss(step)``, backward,
    update; the batch's summed loss. With a penalty and ``diagnostics``, its gradient ratio is recorded there."""
    loss = F.cross_entropy(step.logits, step.labels)
    penalty = extra_loss(step)
    if penalty is not None:
        loss = loss + penalty
    if not torch.isfinite(loss):
        raise DivergedError(
            f"loss is {loss.item()} at step {step.number + 1}; the learning rate ({lr:.3g}) is likely too high"
        )
    optimizer.zero_grad(set_to_none=True)
    of_penalty = _gradients(penalty, params) if penalty is not None and diagnostics is not None else None
    loss.backward()
    if of_penalty is not None:
        ratio = _penalty_ratio(of_penalty, params)
        diagnostics.setdefault("penalty_grad_ratio_first", ratio)
        diagnostics["penalty_grad_ratio_last"] = ratio
    optimizer.step()
    return loss.item() * len(step.labels)


def patience_step(plan: Schedule, kept: EvalStats, stats: EvalStats, waited: int) -> tuple[EvalStats, int]:
    """Early stopping's rule for one new validation: the validation to keep and how many have passed since it
    without a better one. ``stats`` is kept when ``plan.better`` says so; otherwise it counts towards patience,
    but not while the learning rate still rises (the warm-up), nor before the run has beaten its start."""
    if plan.better(stats, kept):
        return stats, 0
    if stats.step > plan.warmup and kept.step > 0:
        return kept, waited + 1
    return kept, waited


def _gradients(penalty: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The penalty's gradient alone (zeros where it does not reach), the graph kept for the full backward."""
    grads = torch.autograd.grad(penalty, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _penalty_ratio(of_penalty: list[torch.Tensor], params: list[torch.Tensor]) -> float:
    """||grad of the penalty|| / ||grad of the cross-entropy||, the latter being the full gradient minus the
    penalty's (one extra backward pass, through the penalty only)."""
    pen = torch.sqrt(sum(g.pow(2).sum() for g in of_penalty))
    pairs = [(p.grad, g) for p, g in zip(params, of_penalty, strict=True) if p.grad is not None]
    ce = torch.sqrt(sum((full - g).pow(2).sum() for full, g in pairs))
    return float(pen / ce) if ce > 0 else math.inf


def training_mode(model: nn.Module, batchnorm: str = "train") -> None:
    """``model.train()``, with BatchNorm layers left in eval mode when ``batchnorm`` is "frozen": they then
    normalise with the running statistics they started with and do not update them."""
    model.train()
    if batchnorm == "frozen":
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def best(history: list[EvalStats], plan: Schedule | None = None) -> EvalStats:
    """The validation a run keeps: its best by ``plan``'s monitor and minimum improvement (by accuracy, without a
    plan), the earliest on ties."""
    plan = plan or Schedule(1, 1)
    kept = history[0]
    for stats in history[1:]:
        if plan.better(stats, kept):
            kept = stats
    return kept


def _copy_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights and buffers (BatchNorm statistics included), as they are now."""
    return {name: t.detach().clone() for name, t in model.state_dict().items()}
