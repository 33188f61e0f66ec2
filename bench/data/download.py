"""Downloads with checksums, for datasets missing from the data root on a machine that is online."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


class DatasetMissingError(Exception):
    """A dataset is neither in the data root nor downloadable; the message says how to provide it."""


def checksum(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` through a temporary file; ``OSError`` when the download fails.

    For archives whose own checksum is not published: the caller checks the files it extracts.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp)
        except (urllib.error.URLError, TimeoutError) as err:
            Path(tmp.name).unlink(missing_ok=True)
            raise OSError(f"could not download {url}: {err}") from err
    return Path(tmp.name).replace(dest)


def fetch(url: str, dest: Path, digest: str, algorithm: str = "sha256") -> Path:
    """Download ``url`` to ``dest`` unless a file with the right checksum is there; verify before keeping it.

    Raises ``OSError`` when the download fails and ``ValueError`` on a checksum mismatch; a partial or
    corrupt download never replaces ``dest``.
    """
    if dest.is_file() and checksum(dest, algorithm) == digest:
        return dest
    part = download(url, dest.with_name(dest.name + ".part"))
    got = checksum(part, algorithm)
    if got != digest:
        part.unlink()
        raise ValueError(f"checksum mismatch for {url}: expected {algorithm} {digest}, got {got}")
    return part.replace(dest)
