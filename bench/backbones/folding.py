"""BatchNorm folded into the convolution before it, for evaluation.

In eval mode a BatchNorm after a convolution is an affine map per channel with fixed statistics, so it can be folded
into that convolution's weights and bias: the same function in another rounding, one pass over the activations
fewer. ``folded(model)`` is a copy of ``model`` computing that way, for evaluation only (no gradients flow back to
``model``); ``Folded`` keeps one such copy and builds it again once ``model``'s weights or statistics have changed.
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
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
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
    """A copy of ``model`` in eval mode, without gradients, each BatchNorm of ``pairs`` folded into its
    convolution and replaced by what it applies after normalising (timm's BatchNormAct2d: dropout, activation);
    its weights in ``memory_format``."""
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        if not bn.track_running_stats or bn.running_mean is None:
            continue  # a BatchNorm normalising by each batch's statistics: not a fixed affine map
        conv.weight, conv.bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        after = [
            m
            for m in (getattr(bn, "drop", None), getattr(bn, "act", None))
            if not isinstance(m, (type(None), nn.Identity))
        ]
        parent, _, leaf = bn_name.rpartition(".")
        replacement = after[0] if len(after) == 1 else nn.Sequential(*after) if after else nn.Identity()
        setattr(modules[parent] if parent else model, leaf, replacement)
    model.requires_grad_(False)
    return model if memory_format is None else model.to(memory_format=memory_format)


_PAIRS: dict[tuple, list[tuple[str, str]]] = {}  # by structure: every run's copy of a backbone is traced once


class Folded:
    """The folded copy of one model, built on first use and again after ``forget()`` (at every switch into eval
    mode: the fused AdamW kernel writes weights without counting it in their ``_version``), or once a parameter or
    buffer of the model has been replaced, moved or written to in place since (PyTorch's version counters)."""

    def __init__(self) -> None:
        self._structure: tuple | None = None
        self._pairs: list[tuple[str, str]] = []
        self._state: tuple | None = None
        self._copy: nn.Module | None = None

    def forget(self) -> None:
        self._state, self._copy = None, None

    def __deepcopy__(self, memo: dict) -> Folded:
        return Folded()  # a copied backbone folds its own weights when first evaluated

    def of(self, model: nn.Module, memory_format: torch.memory_format | None = None) -> nn.Module:
        structure = tuple((name, type(m)) for name, m in model.named_modules())
        if structure != self._structure:  # built, or changed since (a strategy wrapped a layer)
            if structure not in _PAIRS:
                _PAIRS[structure] = conv_bn_pairs(model)
            self._structure, self._pairs, self._state = structure, _PAIRS[structure], None
        if not self._pairs:
            return model
        tensors = (*model.parameters(), *model.buffers())
        state = (memory_format, *((id(t), t._version, t.device, t.dtype) for t in tensors))
        if state != self._state:
            self._state, self._copy = state, folded(model, self._pairs, memory_format)
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
