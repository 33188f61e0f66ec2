"""Data root, downloads with checksums, budgets and stratified splits."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_experiment

from bench import config, data
from bench.data.download import DatasetMissingError, fetch
from bench.data.image import download_cifar10
from bench.matrix import expand
from bench.training_run import CellTrainer


def test_split_is_stratified_disjoint_and_sized():
    labels = np.repeat(np.arange(5), 50)
    s = data.make_split(labels, np.repeat(np.arange(5), 20), budget=10, seed=3, test_per_class=4)
    assert np.bincount(labels[s.train]).tolist() == [8] * 5  # 20 % of each class's 10 validates
    assert np.bincount(labels[s.val]).tolist() == [2] * 5
    assert not set(s.train) & set(s.val)
    assert len(s.test) == 20 and s.train_counts == dict.fromkeys(range(5), 8) and s.labelled() == 50


@pytest.mark.parametrize(("budget", "val"), [(1, 0), (5, 0), (9, 0), (10, 2), (20, 4), (100, 20)])
def test_the_hold_out_comes_out_of_the_budget(budget, val):
    assert data.splits.holdout_per_class(budget) == val
    labels = np.repeat(np.arange(3), 200)
    s = data.make_split(labels, labels, budget, seed=0)
    assert len(s.val) == 3 * val and s.labelled() == 3 * budget


def test_a_probe_trains_on_the_whole_budget_the_others_hold_out_part_of_the_same_examples():
    labels = np.repeat(np.arange(4), 60)
    held = data.make_split(labels, labels, 20, seed=2)
    probe = data.make_split(labels, labels, 20, seed=2, holds_out=False)
    assert len(probe.val) == 0 and np.array_equal(probe.train, np.union1d(held.train, held.val))


def test_validation_outside_the_budget_is_an_explicit_option():
    labels = np.repeat(np.arange(3), 60)
    s = data.make_split(labels, labels, 5, seed=0, extra_val_per_class=7)
    assert len(s.train) == 15 and len(s.val) == 21 and not set(s.train) & set(s.val)
    with pytest.raises(config.ConfigError, match="'val_per_class' drew validation.*splits.extra_val_per_class"):
        config.parse(tiny_experiment(splits={"val_per_class": 10}))


def test_the_test_subset_is_the_same_size_in_every_class():
    labels = np.array([0] * 500 + [1] * 149)
    assert np.bincount(labels[data.splits.test_subset(labels, 200)]).tolist() == [149, 149]
    assert np.bincount(labels[data.splits.test_subset(labels, 100)]).tolist() == [100, 100]
    assert len(data.splits.test_subset(labels, None)) == len(labels)


def test_split_depends_on_seed_only_and_budgets_nest():
    labels = np.repeat(np.arange(3), 40)
    test = np.zeros(3, dtype=int)
    a = data.make_split(labels, test, 10, seed=1)
    b = data.make_split(labels, test, 10, seed=1)
    c = data.make_split(labels, test, 10, seed=2)
    big = data.make_split(labels, test, 20, seed=1)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.train, c.train)
    assert set(a.train) | set(a.val) <= set(big.train) | set(big.val)


def test_short_class_warns_and_records_real_count():
    labels = np.array([0] * 30 + [1] * 8)
    with pytest.warns(UserWarning, match=r"fewer training examples.*1 \(8\)"):
        s = data.make_split(labels, labels, budget=10, seed=0, dataset="toy")
    assert s.train_counts == {0: 8, 1: 8} and len(s.val) == 2  # class 1: 8 labelled, too few to hold out 2 of


def test_all_budget_takes_everything_and_holds_out_a_fifth():
    labels = np.repeat(np.arange(2), 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = data.make_split(labels, labels, "all", seed=0)
    assert len(s.train) == 48 and len(s.val) == 12


def test_every_strategy_gets_identical_indices_for_a_budget_and_seed():
    exp = config.parse(tiny_experiment(budgets=[10], strategies=["feature_extraction", "finetune", "scratch", "l2sp"]))
    ds = data.DATASETS.get("cifar10").load()
    trainers = {cell.strategy: CellTrainer(cell, exp, ds) for cell in expand(exp)}
    for seed in (0, 1):
        held = [trainers[name].split(seed) for name in ("finetune", "scratch", "l2sp")]
        for s in held[1:]:
            for part in ("train", "val", "test"):
                assert np.array_equal(getattr(s, part), getattr(held[0], part))
        probe = trainers["feature_extraction"].split(seed)  # the same labelled examples, all of them training
        assert np.array_equal(probe.train, np.union1d(held[0].train, held[0].val))
        assert np.array_equal(probe.test, held[0].test)
    assert not np.array_equal(trainers["finetune"].split(0).train, trainers["finetune"].split(1).train)


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


@pytest.mark.parametrize("dataset", ["cifar10", "sms_spam", "fsdd"])
def test_the_defaults_cells_touch_their_budget_in_labels_and_never_a_test_example(dataset):
    """For every budget of the default experiment and every strategy: training and validation examples together
    number budget x classes, and no test example (by index, nor by content) is trained or validated on."""
    exp = config.load(Path(__file__).parents[1] / "experiments" / "default.yaml")
    ds = data.DATASETS.get(dataset).load()
    tested = {_content(x) for x in ds.test_items}
    cells = [c for c in expand(exp) if c.dataset == dataset]
    assert {c.budget for c in cells} == set(exp.budgets)
    for cell in cells:
        trainer = CellTrainer(cell, exp, ds)
        for seed in range(exp.seeds.min):
            s = trainer.split(seed)
            assert s.labelled() == int(cell.budget) * len(ds.classes), (cell.run_name, seed, s.describe())
            touched = np.concatenate([s.train, s.val])
            assert len(set(touched)) == len(touched) and touched.max() < len(ds.train_items)
            assert not any(_content(ds.train_items[i]) in tested for i in touched)
            assert s.test.max() < len(ds.test_items) and len(s.test) == len(set(s.test))


def _content(item) -> str | bytes:
    """An example's content: a text, an image's pixels, a recording's samples."""
    if isinstance(item, str):
        return item
    return np.asarray(item[0] if isinstance(item, tuple) else item).tobytes()
