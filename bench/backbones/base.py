"""Backbone contract: a module mapping a preprocessed batch to feature vectors, plus how it was built."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.registry import Registry


class Backbone(nn.Module):
    """Maps ``preprocess(items)`` to a ``(batch, feature_dim)`` tensor.

    ``preprocess`` turns raw dataset items (uint8 images, strings, waveforms) into the tensor(s) the
    network takes; it is deterministic, so features of a frozen backbone can be cached.
    ``preprocess_id`` names everything that decides ``preprocess``'s output (the key of stored inputs);
    ``feature_id`` everything besides the weights that decides the features (part of the feature-cache key).
    """

    modality: str
    feature_dim: int

    def preprocess(self, items: Sequence[Any]) -> Any:
        raise NotImplementedError

    @property
    def preprocess_id(self) -> str:
        raise NotImplementedError

    @property
    def feature_id(self) -> str:
        """By default the preprocessing alone; a backbone that evaluates in another arithmetic adds it."""
        return self.preprocess_id

    def collate(self, batch: Any) -> Any:
        """A batch of stored ``preprocess`` outputs -> the network's input (text trims padding); default: as is."""
        return batch

    def blocks(self) -> list[list[str]]:
        """Parameter names grouped into blocks, ordered from the input to the output.

        Partial fine-tuning trains the last blocks, layer-wise learning rates decay towards the first.
        The default is one block per top-level child module, in registration order.
        """
        groups: dict[str, list[str]] = {}
        for name, _ in self.named_parameters():
            groups.setdefault(name.split(".")[0], []).append(name)
        return list(groups.values())

    def source_head(self) -> nn.Linear | None:
        """The pretrained classifier over the source classes, applied to this backbone's features (for LEEP/NCE);
        never part of the module's parameters or state_dict. Default: ``None``, no source classifier."""
        return None

    #: names (suffixes) of the linear or convolution layers low-rank adapters may wrap; ``None``: not supported
    lora_targets: list[str] | None = None


def numbered_blocks(names: Iterable[str], pattern: str = r"\.(?:layers?|blocks)\.(\d+)\.") -> list[list[str]]:
    """Blocks of a stack of numbered layers (``encoder.layer.3.``, ``layers.0.``): what comes before the first
    numbered layer, each layer in order, then what comes after."""
    before, layers, after = [], {}, []
    for name in names:
        match = re.search(pattern, f".{name}")
        if match:
            layers.setdefault(int(match.group(1)), []).append(name)
        else:
            (after if layers else before).append(name)
    return [g for g in [before, *(layers[i] for i in sorted(layers)), after] if g]


class Classifier(nn.Module):
    """A backbone with a linear head: the model every strategy trains."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, batch: Any) -> torch.Tensor:
        return self.head(self.backbone(batch))


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: what ``bench list backbones`` shows and how to build it.

    ``build(pretrained=, weights=, **options)`` returns the Backbone (options: ``input_size``, ``max_length`` or
    ``clip_seconds``, by modality); with ``pretrained=False`` it is the
    same architecture with random weights (the ``scratch`` baseline).
    """

    name: str
    modality: str
    source: str
    feature_dim: int
    build: Callable[..., Backbone] = field(repr=False)
    available: Callable[[], bool] = field(default=lambda: True, repr=False)


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return BACKBONES.register(spec.name, spec)
