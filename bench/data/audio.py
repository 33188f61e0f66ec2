"""Audio datasets: the Free Spoken Digit Dataset (FSDD), read from the data root or downloaded by online users."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bench.data.base import DatasetSpec, LoadedDataset, manifest_of, register_dataset
from bench.data.download import download

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
# SHA-256 of the SHA256SUMS file listing every recordings/*.wav of v1.0.10 (as `sha256sum`, sorted by path).
FSDD_SUMS_SHA256 = "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"
FSDD_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")  # {digit}_{speaker}_{index}.wav
FSDD_TEST_INDICES = range(5)  # upstream's test split: the first 5 recordings of every digit and speaker


# Integer PCM sample widths in bytes -> the dtype of one sample (24-bit samples are read as the top three bytes of a
# 32-bit one); 8-bit WAV is unsigned, centred on 128.
PCM_DTYPES = {1: np.dtype("u1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"), 4: np.dtype("<i4")}


def read_wav(file: Path | BinaryIO) -> tuple[np.ndarray, int]:
    """A PCM WAV file as a mono float32 waveform in [-1, 1) and its sample rate, channels averaged.

    Read with the standard library's ``wave``, so no native audio library is needed; the scaling is libsndfile's
    (a 16-bit sample ``s`` becomes ``s / 32768``), so the waveforms equal ``soundfile.read``'s.
    """
    try:
        with wave.open(file if hasattr(file, "read") else os.fspath(file), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as err:
        raise ValueError(f"{file}: not a PCM WAV file ({err}); convert it to 16-bit PCM, e.g. with sox") from None
    if width not in PCM_DTYPES:
        raise ValueError(f"{file}: {8 * width}-bit samples are not supported; convert it to 16-bit PCM")
    raw = np.frombuffer(frames, dtype=np.uint8)
    if width == 3:
        raw = np.pad(raw.reshape(-1, 3), ((0, 0), (1, 0))).reshape(-1)
    samples = raw.view(PCM_DTYPES[width]).astype(np.float32)
    if width == 1:
        samples -= 128.0
    samples /= float(1 << (8 * PCM_DTYPES[width].itemsize - 1))
    return samples.reshape(-1, channels).mean(axis=1, dtype=np.float32), rate


def read_fsdd(folder: Path) -> LoadedDataset:
    """Read ``recordings/*.wav`` as (waveform, 8000) items; labels are the digits, split as upstream."""
    train: tuple[list, list] = ([], [])
    test: tuple[list, list] = ([], [])
    for file in sorted((folder / "recordings").iterdir()):
        match = FSDD_NAME.fullmatch(file.name)
        if match is None:
            continue
        items, labels = test if int(match[3]) in FSDD_TEST_INDICES else train
        items.append(read_wav(file))
        labels.append(int(match[1]))
    classes = [str(d) for d in sorted(set(train[1]))]
    return LoadedDataset(
        "fsdd",
        "audio",
        classes,
        train[0],
        np.asarray(train[1], dtype=np.int64),
        test[0],
        np.asarray(test[1], dtype=np.int64),
        manifest_of(folder),
    )


def checksum_list(folder: Path) -> str:
    """``sha256sum`` lines for ``recordings/*.wav`` under ``folder``, sorted by path (the SHA256SUMS format)."""
    files = sorted(f.name for f in (folder / "recordings").iterdir() if FSDD_NAME.fullmatch(f.name))
    lines = [f"{hashlib.sha256((folder / 'recordings' / n).read_bytes()).hexdigest()}  recordings/{n}" for n in files]
    return "".join(f"{line}\n" for line in lines)


def download_fsdd(folder: Path, url: str | None = None, sums_sha256: str = FSDD_SUMS_SHA256) -> None:
    """Fetch the upstream release archive and keep its ``recordings/*.wav`` only if they are exactly v1.0.10.

    GitHub's generated archives are not guaranteed byte-stable, so the check is on the extracted files: their
    checksum list must hash to ``sums_sha256``. Nothing is left in ``folder`` when the download or the check fails.
    """
    url = url or FSDD_URL
    with tempfile.TemporaryDirectory(prefix="fsdd-download-") as tmp:
        archive, staging = Path(tmp) / "fsdd.tar.gz", Path(tmp) / "stage"
        download(url, archive)
        (staging / "recordings").mkdir(parents=True)
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    path = Path(member.name)
                    if member.isfile() and path.parent.name == "recordings" and FSDD_NAME.fullmatch(path.name):
                        (staging / "recordings" / path.name).write_bytes(tar.extractfile(member).read())
        except tarfile.TarError as err:
            raise ValueError(f"{url} is not a readable tar archive: {err}") from err
        sums = checksum_list(staging)
        got = hashlib.sha256(sums.encode()).hexdigest()
        if got != sums_sha256:
            raise ValueError(f"the recordings in {url} are not FSDD v1.0.10 (checksum list {got}, not {sums_sha256})")
        shutil.rmtree(folder / "recordings", ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / "recordings", folder / "recordings")
    (folder / "SHA256SUMS").write_text(sums)


register_dataset(
    DatasetSpec(
        name="fsdd",
        modality="audio",
        num_classes=10,
        folder="fsdd",
        upstream=(
            f"Free Spoken Digit Dataset v1.0.10, {FSDD_URL}, recordings/{{digit}}_{{speaker}}_{{index}}.wav; "
            "test split as upstream: recordings 0-4 of every digit and speaker (300 of 3,000)"
        ),
        reader=read_fsdd,
        downloader=download_fsdd,
    )
)
