"""Preprocessed inputs: computed once per example, and batches equal to preprocessing the batch directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import backbones, data, inputs
from bench.loop import rows


@pytest.fixture(autouse=True)
def empty_store():
    inputs.clear()
    yield
    inputs.clear()


def _counting(backbone, monkeypatch):
    counted = []
    real = backbone.preprocess
    monkeypatch.setattr(backbone, "preprocess", lambda items: counted.append(len(items)) or real(items))
    return counted


def test_images_are_resized_once_and_batches_equal_direct_preprocessing(monkeypatch):
    ds = data.DATASETS.get("cifar10").load()
    bb = backbones.resolve("mobilenetv2_100").build(pretrained=False, input_size=48)
    direct = bb.preprocess(ds.train_items[[7, 3, 11]])
    counted = _counting(bb, monkeypatch)
    first = inputs.preprocessed(bb, ds.train_items, np.array([7, 3, 11]), ds.manifest, "train")
    again = inputs.preprocessed(bb, ds.train_items, np.array([11, 7, 20]), ds.manifest, "train")
    assert counted == [3, 1]  # only example 20 was new
    assert torch.equal(first, direct) and torch.equal(again[:2], direct[[2, 0]])


def test_stored_text_trimmed_per_batch_equals_tokenising_the_batch(monkeypatch):
    monkeypatch.setattr(inputs, "CHUNK", 2)  # chunks padded to different lengths, then merged
    bb = backbones.resolve("minilm_l6").build(pretrained=False, max_length=32)
    texts = ["hi", "a much longer sentence with many more tokens in it", "mid length text", "ok", "one two three"]
    stored = inputs.preprocessed(bb, texts, np.arange(len(texts)), "manifest", "train")
    for batch in ([0, 3], [1, 2], [2, 4, 0]):
        direct = bb.preprocess([texts[i] for i in batch])
        got = bb.collate(rows(stored, np.array(batch)))
        assert got.keys() == direct.keys() and all(torch.equal(got[k], direct[k]) for k in direct)


def test_another_preprocessing_is_another_entry(monkeypatch):
    ds = data.DATASETS.get("cifar10").load()
    small = backbones.resolve("mobilenetv2_100").build(pretrained=False, input_size=32)
    large = backbones.resolve("mobilenetv2_100").build(pretrained=False, input_size=40)
    a = inputs.preprocessed(small, ds.train_items, np.arange(2), ds.manifest, "train")
    b = inputs.preprocessed(large, ds.train_items, np.arange(2), ds.manifest, "train")
    assert a.shape[-1] == 32 and b.shape[-1] == 40
