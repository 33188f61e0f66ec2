"""Data root, downloads with checksums, budgets and stratified splits."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import warnings

import numpy as np
import pytest
from conftest import tiny_experiment

from bench import config, data
from bench.data.download import DatasetMissingError, fetch
from bench.data.image import download_cifar10
from bench.matrix import expand
from bench.trainer import CellTrainer


def test_split_is_stratified_disjoint_and_sized():
    labels = np.repeat(np.arange(5), 50)
    s = data.make_split(labels, np.repeat(np.arange(5), 20), budget=10, seed=3, val_per_class=7, test_per_class=4)
    assert np.bincount(labels[s.train]).tolist() == [10] * 5
    assert np.bincount(labels[s.val]).tolist() == [7] * 5
    assert not set(s.train) & set(s.val)
    assert len(s.test) == 20 and s.train_counts == dict.fromkeys(range(5), 10)


def test_split_depends_on_seed_only_and_budgets_nest():
    labels = np.repeat(np.arange(3), 40)
    test = np.zeros(3, dtype=int)
    a = data.make_split(labels, test, 5, seed=1, val_per_class=5)
    b = data.make_split(labels, test, 5, seed=1, val_per_class=5)
    c = data.make_split(labels, test, 5, seed=2, val_per_class=5)
    big = data.make_split(labels, test, 20, seed=1, val_per_class=5)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.train, c.train)
    assert set(a.train) <= set(big.train) and np.array_equal(a.val, big.val)


def test_short_class_warns_and_records_real_count():
    labels = np.array([0] * 30 + [1] * 8)
    with pytest.warns(UserWarning, match=r"fewer training examples.*1 \(6\)"):
        s = data.make_split(labels, labels, budget=10, seed=0, val_per_class=2, dataset="toy")
    assert s.train_counts == {0: 10, 1: 6}


def test_all_budget_takes_everything_but_validation():
    labels = np.repeat(np.arange(2), 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = data.make_split(labels, labels, "all", seed=0, val_per_class=5)
    assert len(s.train) == 50 and len(s.val) == 10


def test_every_strategy_gets_identical_indices_for_a_budget_and_seed():
    exp = config.parse(tiny_experiment(budgets=[10]))
    ds = data.DATASETS.get("cifar10").load()
    trainers = [CellTrainer(cell, exp, ds) for cell in expand(exp)]
    assert {t.strategy.name for t in trainers} == {"feature_extraction", "finetune", "scratch"}
    for seed in (0, 1):
        splits = [t.split(seed) for t in trainers]
        for s in splits[1:]:
            for part in ("train", "val", "test"):
                assert np.array_equal(getattr(s, part), getattr(splits[0], part))
    assert not np.array_equal(trainers[0].split(0).train, trainers[0].split(1).train)


def test_cifar10_from_the_data_root_is_real_and_balanced():
    ds = data.DATASETS.get("cifar10").load()
    assert ds.train_items.shape[1:] == (32, 32, 3) and ds.train_items.dtype == np.uint8
    assert ds.classes[:3] == ["airplane", "automobile", "bird"]
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.train_items.std() > 30  # real photos, not blank arrays


def test_fetch_checks_the_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    dest = fetch(src.as_uri(), tmp_path / "out" / "file.bin", good)
    assert dest.read_bytes() == b"payload"
    with pytest.raises(ValueError, match="checksum mismatch"):
        fetch(src.as_uri(), tmp_path / "out" / "other.bin", "0" * 64)
    assert not (tmp_path / "out" / "other.bin").exists()
    assert not list((tmp_path / "out").glob("*.part"))


def _fake_cifar_archive(path):
    """A tiny archive in the upstream python-pickle layout: 2 images per batch."""
    rng = np.random.default_rng(0)

    def add(tar, name, obj):
        blob = pickle.dumps(obj)
        info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))

    with tarfile.open(path, "w:gz") as tar:
        add(tar, "batches.meta", {"label_names": ["cat", "dog"]})
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            add(tar, name, {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [0, 1]})


def test_cifar10_download_path_writes_the_image_folder_layout(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    _fake_cifar_archive(archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "root"
    download_cifar10(root / "cifar10", url=archive.as_uri(), md5=md5)
    assert len(list((root / "cifar10" / "train" / "cat").glob("*.png"))) == 5
    assert len(list((root / "cifar10" / "test" / "dog").glob("*.png"))) == 1
    monkeypatch.setenv("TRANSFERBENCH_DATA", str(root))
    ds = data.DATASETS.get("cifar10").load()
    assert ds.classes == ["cat", "dog"] and len(ds.train_labels) == 10


def test_missing_dataset_offline_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr("bench.data.image.CIFAR10_URL", (tmp_path / "nowhere.tar.gz").as_uri())
    spec = data.DATASETS.get("cifar10")
    with pytest.raises(DatasetMissingError) as err:
        spec.load()
    msg = str(err.value)
    assert "cifar10" in msg and str(tmp_path / "empty" / "cifar10") in msg
    assert "--data-root" in msg and "TRANSFERBENCH_DATA" in msg and "download failed" in msg
