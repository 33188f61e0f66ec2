"""Text backbones: real sentence embeddings, padding-invariant features, scratch differs, hub path on a folder."""

from __future__ import annotations

import pytest
import torch

from bench import backbones


@pytest.fixture(scope="module")
def minilm():
    return backbones.resolve("minilm_l6").build(pretrained=True).eval()


@torch.no_grad()
def _embed(bb, sentences):
    return bb(bb.preprocess(sentences))


def test_features_have_the_declared_size_and_mean_real_sentences(minilm):
    spec = backbones.resolve("minilm_l6")
    f = _embed(minilm, ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."])
    assert f.shape == (3, spec.feature_dim) == (3, 384)
    sim = torch.nn.functional.cosine_similarity
    assert sim(f[0], f[1], dim=0) > sim(f[0], f[2], dim=0) + 0.3  # paraphrases close, unrelated far


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


def test_scratch_is_the_same_config_with_random_weights(minilm):
    scratch = backbones.resolve("minilm_l6").build(pretrained=False).eval()
    arch = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    assert [getattr(scratch.model.config, k) for k in arch] == [getattr(minilm.model.config, k) for k in arch]
    a, b = minilm.state_dict(), scratch.state_dict()
    assert a.keys() == b.keys()
    assert not torch.equal(
        a["model.encoder.layer.0.attention.self.query.weight"], b["model.encoder.layer.0.attention.self.query.weight"]
    )
    assert not torch.allclose(_embed(minilm, ["hello"]), _embed(scratch, ["hello"]))


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
