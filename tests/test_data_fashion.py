"""Fashion-MNIST on the real data root, and its download from local copies of the upstream files."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from bench import data, paths
from bench.data.image import FASHION_MNIST_MD5, download_fashion_mnist

FILES = sorted(FASHION_MNIST_MD5)


def test_fashion_mnist_shapes_labels_and_classes():
    ds = data.DATASETS.get("fashion_mnist").load()
    assert (ds.name, ds.modality) == ("fashion_mnist", "image")
    assert ds.train_items.shape == (60000, 28, 28) and ds.test_items.shape == (10000, 28, 28)
    assert ds.train_items.dtype == np.uint8 and ds.test_items.dtype == np.uint8
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and len(ds.classes) == 10
    assert ds.train_items.std() > 30 and ds.test_items.std() > 30  # real pictures, not blank arrays


def mirror_md5s() -> dict[str, str]:
    folder = paths.data_root() / "fashion_mnist"
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in FILES}


def test_fashion_mnist_download_writes_a_loadable_folder(tmp_path, monkeypatch):
    src = paths.data_root() / "fashion_mnist"
    reference = data.DATASETS.get("fashion_mnist").load()
    root = tmp_path / "root"
    download_fashion_mnist(root / "fashion_mnist", url=src.as_uri() + "/", md5s=mirror_md5s())
    sums = (root / "fashion_mnist" / "SHA256SUMS").read_text().splitlines()
    mirror_sums = (src / "SHA256SUMS").read_text().splitlines()
    assert sums == [line for line in mirror_sums if line.split()[1] in FILES]
    monkeypatch.setenv("TRANSFERBENCH_DATA", str(root))
    ds = data.DATASETS.get("fashion_mnist").load()
    assert np.array_equal(ds.train_items, reference.train_items) and np.array_equal(
        ds.test_labels, reference.test_labels
    )


def test_fashion_mnist_download_refuses_a_checksum_mismatch(tmp_path):
    src = paths.data_root() / "fashion_mnist"
    md5s = mirror_md5s() | {"t10k-labels-idx1-ubyte.gz": "0" * 32}
    with pytest.raises(ValueError, match="checksum mismatch"):
        download_fashion_mnist(tmp_path / "fashion_mnist", url=src.as_uri() + "/", md5s=md5s)
    assert not (tmp_path / "fashion_mnist" / "SHA256SUMS").exists()
    assert not (tmp_path / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").exists()
