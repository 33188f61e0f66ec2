"""Text backbones through transformers: packaged sentence encoders, or any model id for users online."""

from __future__ import annotations

from pathlib import Path

from bench.backbones.base import Backbone


def build_hub(name: str, pretrained: bool = True, weights: Path | None = None, max_length: int | None = None) -> Backbone:
    raise NotImplementedError("hf backbones are being added")
