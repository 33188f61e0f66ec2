"""Backbones per modality: pretrained weights from packages, local files or hubs; random init for scratch.

Names are registered (``bench list backbones``); ``timm:<model>`` reaches any timm model through timm's
own pretrained loader (its hub when online, or a local ``weights`` file).
"""

from __future__ import annotations

from bench.backbones import image
from bench.backbones.base import BACKBONES, Backbone, BackboneSpec, Classifier, register_backbone

HUB_PREFIXES = {"timm": ("image", image.build_hub)}


def resolve(name: str) -> BackboneSpec:
    """The spec of a registered name or of a hub name ``<prefix>:<model>``."""
    prefix, sep, model = name.partition(":")
    if sep and prefix in HUB_PREFIXES:
        if not model:
            raise ValueError(f"'{name}': give a model name after '{prefix}:', e.g. 'timm:resnet18.a1_in1k'")
        modality, build = HUB_PREFIXES[prefix]
        return BackboneSpec(
            name=name,
            modality=modality,
            source=f"{prefix} hub",
            feature_dim=-1,
            build=lambda pretrained=True, weights=None, input_size=None: build(model, pretrained, weights, input_size),
        )
    return BACKBONES.get(name)


__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "Classifier", "register_backbone", "resolve"]
