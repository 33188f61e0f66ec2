"""Dataset contract: a registered spec that loads a dataset's train pool and test split from the data root."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import paths
from bench.data.download import DatasetMissingError
from bench.registry import Registry


@dataclass
class LoadedDataset:
    """A dataset in memory. ``*_items`` are whatever the modality's backbones preprocess:
    image: a uint8 array (N, H, W, 3) or grey (N, H, W); text: a list of str;
    audio: a list of ``(waveform, sample_rate)`` with a mono float32 numpy waveform."""

    name: str
    modality: str
    classes: list[str]
    train_items: Sequence[Any]
    train_labels: np.ndarray
    test_items: Sequence[Any]
    test_labels: np.ndarray
    manifest: str  # a digest of the files it was read from: part of every cell key


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    modality: str
    num_classes: int
    folder: str  # sub-folder of the data root
    upstream: str  # where online users get it, in words
    reader: Callable[[Path], LoadedDataset] = field(repr=False)
    downloader: Callable[[Path], None] | None = field(default=None, repr=False)
    marker: str = "SHA256SUMS"  # a file whose presence means the folder is complete

    def path(self) -> Path:
        return paths.data_root() / self.folder

    def available(self) -> bool:
        return (self.path() / self.marker).is_file()

    def load(self) -> LoadedDataset:
        """Read from the data root, downloading first when it is missing and a download exists."""
        folder = self.path()
        if not self.available():
            self._download(folder)
        return self.reader(folder)

    def _download(self, folder: Path) -> None:
        how = (
            f"put the {self.name} files there (upstream: {self.upstream}), or point the data root at a "
            f"folder that has them with --data-root or ${paths.DATA_ENV}"
        )
        if self.downloader is None:
            raise DatasetMissingError(f"dataset '{self.name}' not found at {folder}: {how}")
        try:
            self.downloader(folder)
        except (OSError, ValueError) as err:
            raise DatasetMissingError(
                f"dataset '{self.name}' not found at {folder} and the download failed ({err}): {how}"
            ) from err


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name, spec)


def manifest_of(folder: Path, marker: str = "SHA256SUMS") -> str:
    """Digest of the folder's checksum list: changes whenever any data file changes."""
    return hashlib.sha256((folder / marker).read_bytes()).hexdigest()[:16]
