"""Datasets per modality, the data root, downloads with checksums, budgets and stratified splits."""

from bench.data import audio, image, text  # noqa: F401  (register the datasets)
from bench.data.base import DATASETS, DatasetSpec, LoadedDataset, register_dataset
from bench.data.download import DatasetMissingError
from bench.data.splits import Split, make_split

__all__ = [
    "DATASETS",
    "DatasetMissingError",
    "DatasetSpec",
    "LoadedDataset",
    "Split",
    "make_split",
    "register_dataset",
]
