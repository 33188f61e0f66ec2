"""Does this environment work? ``bench doctor``: every package with native code that a run loads imports and runs
one small operation, and one file of each modality decodes the way the datasets are read.

``make install`` runs it as its last step, so an environment that cannot run the benchmark (a wheel without its
native library, a package missing) fails at install time, one line per broken package naming the fix, and not
later inside a test or a benchmark.
"""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Callable
from pathlib import Path

from bench import errors, paths


def _numpy() -> None:
    import numpy as np

    np.linalg.svd(np.eye(3))


def _torch() -> None:
    import torch

    (torch.ones(4, 4) @ torch.ones(4, 4)).sum().item()


def _torchvision() -> None:
    import torch
    from torchvision.ops import nms  # a C++ operator: fails when torchvision's native library does not match torch

    nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)


def _torchaudio() -> None:
    import torch
    import torchaudio.functional as AF

    AF.resample(torch.zeros(1, 800), 8000, 16000)


def _scipy() -> None:
    from scipy import linalg

    linalg.eigh([[2.0, 1.0], [1.0, 2.0]])


def _sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def _sqlite() -> None:
    import sqlalchemy as sa

    with sa.create_engine("sqlite://").connect() as connection:  # the stores' default backend
        connection.execute(sa.text("select 1"))


def _psycopg() -> None:
    import psycopg

    psycopg.pq.version()  # the libpq psycopg loaded (its binary wheel bundles one)


def _matplotlib() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(1, 1))
    figure.savefig(io.BytesIO(), format="png")
    plt.close(figure)


def _imports(*modules: str) -> Callable[[], None]:
    def imports() -> None:
        import importlib

        for module in modules:
            importlib.import_module(module)

    return imports


def _first(folder: str, pattern: str) -> Path | None:
    """The first file matching ``pattern`` under a dataset's folder of the data root, None when there is none."""
    root = paths.data_root() / folder
    return next(iter(sorted(root.glob(pattern))), None) if root.is_dir() else None


def _image() -> None:
    """A CIFAR-10 image from the data root as the image reader opens it (else a PNG made here)."""
    import numpy as np
    from PIL import Image

    file = _first("cifar10", "train/*/*")
    if file is None:
        file = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(file, format="PNG")
        file.seek(0)
    with Image.open(file) as img:
        np.asarray(img.convert("RGB"))


def _text() -> None:
    """An SMS Spam line from the data root (else a sentence), tokenised by the packaged MiniLM's tokenizer."""
    from transformers import AutoTokenizer

    from bench.backbones.text import minilm_folder

    file = _first("sms_spam", "SMSSpamCollection")
    line = file.read_text(encoding="utf-8").splitlines()[0] if file else "Is transfer learning worth it?"
    AutoTokenizer.from_pretrained(minilm_folder())([line])


def _audio() -> None:
    """An FSDD recording from the data root (else a WAV made here) read as the audio reader reads it, then
    resampled as the audio backbones do."""
    import torch
    import torchaudio.functional as AF

    from bench.data.audio import read_wav

    file = _first("fsdd", "recordings/*.wav")
    if file is None:
        file = io.BytesIO()
        with wave.open(file, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
            w.writeframes(bytes(1600))
        file.seek(0)
    samples, rate = read_wav(file)
    AF.resample(torch.from_numpy(samples), rate, 16000)


# What is checked, in the order a run loads it: (what, check). Packages first, then one file per modality.
CHECKS: list[tuple[str, Callable[[], None]]] = [
    ("numpy", _numpy),
    ("torch", _torch),
    ("torchvision", _torchvision),
    ("torchaudio", _torchaudio),
    ("scipy", _scipy),
    ("scikit-learn", _sklearn),
    ("pandas, pyarrow", _imports("pandas", "pyarrow")),
    ("pydantic, yaml", _imports("pydantic", "yaml")),
    ("timm, transformers, peft, safetensors", _imports("timm", "transformers", "peft", "safetensors")),
    ("onnx", _imports("onnx")),
    ("torchcrepe, librosa", _imports("torchcrepe", "librosa")),
    ("sqlite, sqlalchemy", _sqlite),
    ("mlflow, optuna", _imports("mlflow", "optuna", "optuna_integration.mlflow")),
    ("psycopg", _psycopg),
    ("ray", _imports("ray")),
    ("matplotlib", _matplotlib),
    ("image file (pillow)", _image),
    ("text file (tokenizers)", _text),
    ("audio file (wave, torchaudio)", _audio),
]


def check(say: Callable[[str], None] = print, starting: Callable[[str], None] = lambda what: None) -> list[str]:
    """Run every check (``starting(what)`` before each); return one line per broken package (what is broken, the
    checks it fails, the fix), empty when all pass."""
    failed: dict[str, list[str]] = {}  # one broken package often fails several checks: it is named once
    start = time.perf_counter()
    for what, run in CHECKS:
        starting(what)
        try:
            run()
        except Exception as err:  # noqa: BLE001 - every failure is reported
            failed.setdefault(errors.broken_package(err) or errors.first_line(err), []).append(what)
    if not failed:
        say(f"environment ok: {len(CHECKS)} checks passed ({time.perf_counter() - start:.1f} s)")
    return [f"{problem}; fails: {', '.join(whats)}; {errors.REBUILD}" for problem, whats in failed.items()]
