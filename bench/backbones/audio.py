"""Audio backbones: CREPE (torchcrepe) and the resemblyzer speaker encoder; transformers audio models by hub id."""

from __future__ import annotations

from pathlib import Path

from bench.backbones.base import Backbone


def build_hub(name: str, pretrained: bool = True, weights: Path | None = None,
              clip_seconds: float | None = None) -> Backbone:
    raise NotImplementedError("hf-audio backbones are being added")
