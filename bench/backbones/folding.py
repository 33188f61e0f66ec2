"""BatchNorm folded into the convolution before it, for evaluation.

In eval mode a BatchNorm after a convolution is an affine map per channel with fixed statistics, so it can be folded
into that convolution's weights and bias: the same function in another rounding, one pass over the activations
fewer. ``folded(model)`` is a copy of ``model`` computing that way, for evaluation only, sharing every other tensor
with ``model``; ``Folded`` keeps one such copy and folds again once ``model``'s weights or statistics have changed.
``denormals_flushed`` computes with denormal floats as zero, as the folded evaluation does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


def _plain_convolutions() -> tuple[type, ...]:
    """Convolution classes whose forward is a convolution with their own weight and bias (timm's Conv2dSame pads
    the input first); not subclasses that transform their weights (timm's StdConv2d standardises them)."""
    try:
        from timm.layers import Conv2dSame
    except ImportError:
        return (nn.Conv2d,)
    return (nn.Conv2d, Conv2dSame)


class _BatchNormAsLeaf(torch.fx.Tracer):
    """Traces a model keeping every BatchNorm (timm's BatchNormAct2d included) and convolution as one call."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, (nn.BatchNorm2d, nn.Conv2d)) or super().is_leaf_module(m, qualified_name)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(convolution, BatchNorm) module names where the BatchNorm's only input is the convolution's output, and
    nothing else reads that output; none when the model cannot be traced (its evaluation then runs as it is)."""
    try:
        graph = _BatchNormAsLeaf().trace(model)
    except Exception:  # noqa: BLE001 - models with data-dependent control flow do not trace: nothing is folded
        return []
    modules, plain = dict(model.named_modules()), _plain_convolutions()
    pairs = []
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or not bn.track_running_stats:
            continue  # not a BatchNorm, or one normalising by each batch's statistics: not a fixed affine map
        source = node.args[0]
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and type(modules[source.target]) in plain
            and len(source.users) == 1
            and len(node.args) == 1
            and not node.kwargs
        ):
            pairs.append((source.target, node.target))
    return pairs


def folded(
    model: nn.Module, pairs: list[tuple[str, str]], memory_format: torch.memory_format | None = None
) -> nn.Module:
    """A copy of ``model`` in eval mode, for evaluation without gradients, each BatchNorm of ``pairs`` folded into
    its convolution (weights in ``memory_format``) and replaced by what it applies after normalising (timm's
    BatchNormAct2d: dropout, activation). Every other parameter and buffer is ``model``'s own tensor, shared, not
    copied: ``refold`` brings the copy up to date after ``model`` has trained."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    copied = copy.deepcopy(model, memo=dict(shared)).eval()  # new modules around the same tensors
    modules = dict(copied.named_modules())
    for _, bn_name in pairs:
        bn = modules[bn_name]
        after = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
        after = [m for m in after if not isinstance(m, nn.Identity)]
        parent, _, leaf = bn_name.rpartition(".")
        replacement = after[0] if len(after) == 1 else nn.Sequential(*after) if after else nn.Identity()
        setattr(modules[parent] if parent else copied, leaf, replacement)
    refold(copied, model, pairs, memory_format)
    return copied


def refold(
    copied: nn.Module, model: nn.Module, pairs: list[tuple[str, str]], memory_format: torch.memory_format | None
) -> None:
    """The folded convolutions of ``copied`` computed again from ``model``'s convolutions and BatchNorms now."""
    source, target = dict(model.named_modules()), dict(copied.named_modules())
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = source[conv_name], source[bn_name]
            weight, bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            if memory_format is not None:
                weight = weight.contiguous(memory_format=memory_format)
            target[conv_name].weight = nn.Parameter(weight, requires_grad=False)
            target[conv_name].bias = nn.Parameter(bias, requires_grad=False)


_PAIRS: dict[tuple, list[tuple[str, str]]] = {}  # by structure: every run's copy of a backbone is traced once


class Folded:
    """The folded copy of one model: made on first use (again once a tensor of the model was replaced or moved),
    its folded convolutions computed again after ``forget()`` (at every switch into eval mode: the fused AdamW kernel
    writes weights without counting it in their ``_version``) or once a tensor of the model was written in place
    since (PyTorch's version counters)."""

    def __init__(self) -> None:
        self._structure: tuple | None = None
        self._pairs: list[tuple[str, str]] = []
        self._tensors: tuple | None = None
        self._versions: tuple | None = None
        self._copy: nn.Module | None = None

    def forget(self) -> None:
        self._versions = None

    def __deepcopy__(self, memo: dict) -> Folded:
        return Folded()  # a copied backbone folds its own weights when first evaluated

    def of(self, model: nn.Module, memory_format: torch.memory_format | None = None) -> nn.Module:
        structure = tuple((name, type(m)) for name, m in model.named_modules())
        if structure != self._structure:  # first use, or changed since (a strategy wrapped a layer)
            if structure not in _PAIRS:
                _PAIRS[structure] = conv_bn_pairs(model)
            self._structure, self._pairs, self._copy = structure, _PAIRS[structure], None
        if not self._pairs:
            return model
        tensors = (*model.parameters(), *model.buffers())
        identity = (memory_format, *((id(t), t.device, t.dtype) for t in tensors))
        versions = tuple(t._version for t in tensors)
        if self._copy is None or identity != self._tensors:
            self._copy, self._tensors = folded(model, self._pairs, memory_format), identity
        elif versions != self._versions:
            refold(self._copy, model, self._pairs, memory_format)
        self._versions = versions
        return self._copy


@contextmanager
def denormals_flushed() -> Iterator[None]:
    """Denormal floats (magnitudes below 1.2e-38) read and computed as zero on this thread, where the CPU supports
    it. Pretrained networks have dead channels (MobileNetV2's packaged weights: BatchNorm variances of 6e-45) whose
    activations are denormal, and every multiplication with one takes the processor's slow path; their share of
    any sum is far below float32's resolution."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
