"""On-disk cache of a frozen backbone's features, shared across trials, seeds, strategies and processes.

One file per (backbone weights, preprocessing, dataset files, pool), where the pool is the dataset's
training pool or its test split. It holds the features of every example computed so far: a request
computes only the examples not yet in it, so seeds with different splits and growing budgets reuse
each other's work. The key covers everything that decides a feature: a digest of the backbone's
tensors, its ``feature_id`` (preprocessing, evaluation arithmetic), the dataset's manifest and the pool. Files are
written to a temporary name and renamed, so a concurrent process never reads a partial file (at worst it recomputes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import paths
from bench.backbones.base import Backbone
from bench.loop import Batches

Progress = Callable[[int, int], None]
_MEMORY: dict[Path, tuple[np.ndarray, torch.Tensor]] = {}  # path -> the features it held when last read or written


def clear_memory() -> None:
    """Forget the in-memory copies (the files stay)."""
    _MEMORY.clear()


def weights_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def feature_key(backbone: Backbone, manifest: str, pool: str, digest: str | None = None) -> str:
    """The cache key; ``digest`` is ``weights_digest(backbone)`` when the caller has it already."""
    h = hashlib.sha256()
    for piece in (digest or weights_digest(backbone), backbone.feature_id, manifest, pool):
        h.update(piece.encode())
    return h.hexdigest()[:24]


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
    feats: list[torch.Tensor] = []
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
    pool: str,
    batch_size: int,
    device: torch.device,
    progress: Progress = lambda done, total: None,
    digest: str | None = None,
) -> torch.Tensor:
    """Features of ``items[indices]`` (in the order of ``indices``); only examples never seen are computed.

    The last file read or written is kept in memory too, so repeated runs of a cell do not read it again.
    """
    path = paths.cache_dir("features") / f"{feature_key(backbone, manifest, pool, digest)}.pt"
    have, feats = _MEMORY.get(path, (np.zeros(0, dtype=np.int64), None))
    missing = np.setdiff1d(indices, have)
    if len(missing) and path.is_file():  # another process may have computed them since
        stored = torch.load(path, weights_only=True)
        have, feats = stored["indices"].numpy(), stored["features"]
        missing = np.setdiff1d(indices, have)
    if len(missing):
        new = extract(backbone, items, labels, missing, batch_size, device, progress)
        have = np.concatenate([have, missing])
        feats = new if feats is None else torch.cat([feats, new])
        order = np.argsort(have, kind="stable")
        have, feats = have[order], feats[torch.from_numpy(order)]
        with paths.atomic_file(path) as tmp:
            torch.save({"indices": torch.from_numpy(have), "features": feats}, tmp)
    _MEMORY[path] = (have, feats)
    return feats[torch.from_numpy(np.searchsorted(have, indices))]
