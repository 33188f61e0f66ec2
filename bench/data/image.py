"""Image datasets: CIFAR-10 (ImageFolder layout of the data root) and the upstream download for online users."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np

from bench import paths
from bench.data.base import DatasetSpec, LoadedDataset, manifest_of, register_dataset
from bench.data.download import fetch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision's source
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def _read_image_folder(split_dir: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((split_dir / cls).iterdir()):
            with Image.open(file) as img:
                images.append(np.asarray(img.convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def read_image_folder_dataset(name: str, folder: Path) -> LoadedDataset:
    """Read ``train/<class>/*`` and ``test/<class>/*`` into uint8 arrays, cached decoded on disk."""
    manifest = manifest_of(folder)
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    cached = paths.cache_dir("datasets") / f"{name}-{manifest}.npz"
    if cached.is_file():
        z = np.load(cached)
        xtr, ytr, xte, yte = z["xtr"], z["ytr"], z["xte"], z["yte"]
    else:
        xtr, ytr = _read_image_folder(folder / "train", classes)
        xte, yte = _read_image_folder(folder / "test", classes)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
        tmp.replace(cached)
    return LoadedDataset(name, "image", classes, xtr, ytr, xte, yte, manifest)


def download_cifar10(folder: Path, url: str | None = None, md5: str = CIFAR10_MD5) -> None:
    """Fetch the upstream python-pickle archive, check its MD5 and write the ImageFolder layout."""
    from PIL import Image

    archive = fetch(url or CIFAR10_URL, folder / "_download" / "cifar-10-python.tar.gz", md5, "md5")
    with tarfile.open(archive) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        meta = pickle.load(tar.extractfile(members["batches.meta"]), encoding="latin1")
        classes = meta["label_names"]
        batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        sums = []
        for split, names in batches.items():
            counters = dict.fromkeys(classes, 0)
            for bname in names:
                batch = pickle.load(tar.extractfile(members[bname]), encoding="latin1")
                data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                for img, label in zip(data, batch["labels"], strict=True):
                    cls = classes[label]
                    rel = Path(split) / cls / f"{counters[cls]:04d}.png"
                    counters[cls] += 1
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(folder / rel)
                    sums.append(f"{hashlib.sha256((folder / rel).read_bytes()).hexdigest()}  {rel}")
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")


register_dataset(
    DatasetSpec(
        name="cifar10",
        modality="image",
        num_classes=10,
        folder="cifar10",
        upstream=f"{CIFAR10_URL} (Krizhevsky 2009), as train/<class>/*.png and test/<class>/*.png",
        reader=lambda folder: read_image_folder_dataset("cifar10", folder),
        downloader=download_cifar10,
    )
)
