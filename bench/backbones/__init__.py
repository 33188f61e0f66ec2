"""Backbones per modality: pretrained weights from packages, local files or hubs; random init for scratch.

Names are registered (``bench list backbones``). Hub names reach any model through its library's own
pretrained loader (its hub when online, or a local ``weights`` file or folder):
``timm:<model>`` (images), ``hf:<model id>`` (text), ``hf-audio:<model id>`` (audio).
"""

from __future__ import annotations

import functools

from bench.backbones import audio, image, text
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


__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "Classifier", "register_backbone", "resolve"]
