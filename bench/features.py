"""On-disk cache of a frozen backbone's features, shared across trials, seeds, strategies and processes.

The key covers everything that decides the features: the backbone's weights (a digest of its tensors),
its preprocessing, the dataset's manifest, the split part and the exact indices. Files are written to a
temporary name and renamed, so concurrent processes never read a partial file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench import paths
from bench.backbones.base import Backbone
from bench.train import Batches


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def feature_key(backbone: Backbone, manifest: str, part: str, indices: np.ndarray) -> str:
    h = hashlib.sha256()
    for piece in (weights_digest(backbone), backbone.preprocess_id, manifest, part):
        h.update(piece.encode())
    h.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()[:24]


Progress = Callable[[int, int], None]


@torch.no_grad()
def extract(
    backbone: Backbone,
    items: Any,
    labels: np.ndarray,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    progress: Progress = lambda done, total: None,
) -> torch.Tensor:
    """Features of ``items[indices]`` in index order, computed in eval mode; ``progress(done, total)`` per batch."""
    backbone.eval()
    batches = Batches(items, labels, indices, batch_size, backbone.preprocess, device)
    feats = []
    for x, _ in batches():
        feats.append(backbone(x).float().cpu())
        progress(sum(len(f) for f in feats), len(indices))
    return torch.cat(feats)


def cached_features(
    backbone: Backbone,
    items: Any,
    labels: np.ndarray,
    indices: np.ndarray,
    manifest: str,
    part: str,
    batch_size: int,
    device: torch.device,
    progress: Progress = lambda done, total: None,
) -> torch.Tensor:
    """Features of ``items[indices]``, from the cache when present, computed and stored otherwise."""
    path = paths.cache_dir("features") / f"{feature_key(backbone, manifest, part, indices)}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    feats = extract(backbone, items, labels, indices, batch_size, device, progress)
    tmp = path.with_suffix(f".{id(feats)}.tmp")
    torch.save(feats, tmp)
    tmp.replace(path)
    return feats
