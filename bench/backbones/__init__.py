"""Backbones per modality: pretrained weights from packages, local files or hubs; random init for scratch.

Names are registered (``bench list backbones``). Hub names reach any model through its library's own
pretrained loader (its hub when online, or a local ``weights`` file or folder):
``timm:<model>`` (images), ``hf:<model id>`` (text), ``hf-audio:<model id>`` (audio).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from bench.backbones import audio, image, text, tiny  # noqa: F401 - tiny registers its backbones
from bench.backbones.base import BACKBONES, Backbone, BackboneSpec, Classifier, register_backbone
from bench.registry import UnknownNameError

HUB_PREFIXES = {
    "timm": ("image", image.build_hub, "timm:resnet18.a1_in1k"),
    "hf": ("text", text.build_hub, "hf:bert-base-uncased"),
    "hf-audio": ("audio", audio.build_hub, "hf-audio:facebook/wav2vec2-base"),
}


def resolve(name: str) -> BackboneSpec:
    """The spec of a registered name or of a hub name ``<prefix>:<model>``."""
    prefix, sep, model = name.partition(":")
    if sep and prefix in HUB_PREFIXES:
        modality, build, example = HUB_PREFIXES[prefix]
        if not model:
            raise UnknownNameError(f"'{name}': give a model name after '{prefix}:', e.g. '{example}'")
        return BackboneSpec(name, modality, f"{prefix} hub", feature_dim=-1, build=functools.partial(build, model))
    return BACKBONES.get(name)


_PRETRAINED: dict[tuple, Backbone] = {}


def build(name: str, pretrained: bool, weights: Path | None = None, reuse: bool = True, **options: Any) -> Backbone:
    """A fresh backbone for one training run.

    Pretrained weights are read and converted once per process: every later run of the same backbone, weights and
    options starts from a deep copy of that first model, bit for bit the same as reading the file again (``reuse``
    off). Random initialisation (``pretrained=False``) always builds anew, from the caller's RNG state.
    """
    spec = resolve(name)
    if not pretrained:
        return spec.build(pretrained=False, weights=weights, **options)
    if not reuse:
        return spec.build(pretrained=True, weights=weights, **options)
    key = (name, str(weights), tuple(sorted(options.items())))
    if key not in _PRETRAINED:
        _PRETRAINED[key] = spec.build(pretrained=True, weights=weights, **options)
    return copy.deepcopy(_PRETRAINED[key])


__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "Classifier", "build", "register_backbone", "resolve"]
