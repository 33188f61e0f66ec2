"""Image datasets: CIFAR-10 (ImageFolder layout of the data root) and Fashion-MNIST (upstream IDX gzip files),
with their upstream downloads for online users."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np

from bench import paths
from bench.data.base import DatasetSpec, LoadedDataset, manifest_of, register_dataset
from bench.data.download import checksum, fetch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision's source
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # + file name
FASHION_MNIST_MD5 = {  # the upstream README's checksums of its files
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES = [  # upstream order: the files' labels index into it
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


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
        with paths.atomic_file(cached, suffix=".npz") as tmp:
            np.savez(tmp, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
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


def read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes: magic 0, 0, 0x08, ndim, then ndim big-endian uint32 sizes."""
    raw = gzip.decompress(path.read_bytes())
    if raw[:3] != b"\0\0\x08":
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = np.frombuffer(raw, ">u4", ndim, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def read_fashion_mnist(folder: Path) -> LoadedDataset:
    """The upstream train and t10k files: grey uint8 images (N, 28, 28) and int64 labels."""

    def part(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {len(images)} {prefix} images but {len(labels)} labels")
        return images, labels

    xtr, ytr = part("train")
    xte, yte = part("t10k")
    return LoadedDataset("fashion_mnist", "image", FASHION_MNIST_CLASSES, xtr, ytr, xte, yte, manifest_of(folder))


def download_fashion_mnist(folder: Path, url: str | None = None, md5s: dict[str, str] = FASHION_MNIST_MD5) -> None:
    """Fetch the four upstream files, each checked against its MD5, then list their SHA-256 in SHA256SUMS."""
    for name, md5 in md5s.items():
        fetch((url or FASHION_MNIST_URL) + name, folder / name, md5, "md5")
    (folder / "SHA256SUMS").write_text("".join(f"{checksum(folder / name)}  {name}\n" for name in sorted(md5s)))


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

register_dataset(
    DatasetSpec(
        name="fashion_mnist",
        modality="image",
        num_classes=10,
        folder="fashion_mnist",
        upstream=f"{FASHION_MNIST_URL} (Xiao et al. 2017), {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz",
        reader=read_fashion_mnist,
        downloader=download_fashion_mnist,
    )
)
