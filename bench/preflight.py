"""What can be checked before anything is written: the results folder and the stores can be written, the device
exists, each hub backbone resolves here. ``bench validate``, ``bench run --dry-run`` and ``bench run`` run the same
checks first, so a run that would fail on them fails at once, writing nothing; ``bench report`` checks the folders.

Each failure is a ``ConfigError`` of one line: what is wrong and how to fix it. Heavy libraries are imported only
for what the experiment uses (torch for a ``cuda`` device, timm for a ``timm:`` backbone).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from bench import paths
from bench.config import STORAGE_SCHEMES, TRACKING_SCHEMES, ConfigError, Experiment, check_scheme
from bench.stores import Stores, sqlite_path

HUB_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HUB_TIMEOUT = 10  # seconds to wait for the hub to say whether a model it was asked for exists


def check(exp: Experiment, stores: Stores, training: bool = True) -> None:
    """Every check for ``exp`` writing to ``stores``; with ``training``, also its device and hub backbones."""
    results_folder()
    store_paths(stores)
    if training:
        device(exp)
        hub_backbones(exp)


def results_folder() -> None:
    """The results folder is a folder, or can be made, and can be written (it is not created here)."""
    root = paths.results_root()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--results {root}: not a folder; give a folder (it is created if missing)")
    if (problem := _unwritable(root)) is not None:
        raise ConfigError(f"--results {root}: cannot write there ({problem}); give a folder you can write")


def store_paths(stores: Stores) -> None:
    """Each store URI, however it was set (file, flag, environment), has a known scheme, and a sqlite store's file
    can be created or written."""
    for setting, uri, schemes, what in (
        ("tracking_uri", stores.tracking, TRACKING_SCHEMES, "an MLflow tracking URI"),
        ("optuna_storage", stores.optuna, STORAGE_SCHEMES, "an Optuna storage URL"),
    ):
        try:
            check_scheme(uri, schemes, what)
        except ValueError as e:
            raise ConfigError(f"{setting} (from the file, a flag or the environment): {e}") from None
        path = sqlite_path(uri)
        if path is None:
            continue
        problem = None
        if path.is_dir():
            problem = f"{path} is a folder"
        elif (problem := _unwritable(path.parent)) is None and path.exists() and not os.access(path, os.W_OK):
            problem = f"{path} is read-only"
        if problem is not None:
            raise ConfigError(
                f"{setting} {uri[:200]}: cannot create or write the store there ({problem}); give a path you can "
                "write, or leave it unset for the results folder"
            )


def device(exp: Experiment) -> None:
    """A ``cuda`` or ``mps`` device exists on this machine (on a Ray cluster, its nodes' devices count)."""
    wanted = exp.training.device
    if wanted in ("auto", "cpu") or exp.cluster.ray:
        return
    import torch

    found = torch.cuda.is_available() if wanted == "cuda" else torch.backends.mps.is_available()
    if not found:
        raise ConfigError(
            f"training.device: '{wanted}', but this machine has no {wanted.upper() if wanted == 'cuda' else 'MPS'} "
            f"device (torch {torch.__version__} sees none); set training.device to 'auto' or 'cpu', or run where one is"
        )


def hub_backbones(exp: Experiment) -> None:
    """Each hub backbone without a local ``weights:`` names a model that exists, with pretrained weights in the local
    cache or downloadable now (not with ``HF_HUB_OFFLINE`` set, nor where the hub cannot be reached)."""
    from bench.strategies import STRATEGIES

    pretrained = any(STRATEGIES.get(name).pretrained for name in exp.strategies)
    for bb in exp.backbones:
        prefix, sep, model = bb.name.partition(":")
        if not sep or bb.weights is not None:
            continue
        if prefix == "timm":
            problem = _timm_problem(model, pretrained)
        elif prefix in ("hf", "hf-audio"):
            problem = _hf_problem(model)
        else:
            continue
        if problem is not None:
            raise ConfigError(f"backbone '{bb.name}': {problem}")


def _timm_problem(model: str, pretrained: bool) -> str | None:
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(model):
        near = timm.list_models(f"*{model.split('.')[0][:12]}*")[:3]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        return f"timm has no model '{model}'{hint}; `timm.list_models()` lists them"
    if not pretrained:
        return None
    cfg = get_pretrained_cfg(model)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return f"timm has no pretrained weights for '{model}'; give a local `weights:` file"
    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        if any(_in_hub_cache(cfg.hf_hub_id, name) for name in names):
            return None
    elif _in_torch_cache(cfg.url):
        return None
    return _download_problem(cfg.hf_hub_id or cfg.url)


def _hf_problem(model: str) -> str | None:
    if Path(model).is_dir():  # a local model folder
        return None
    try:
        cached = _in_hub_cache(model, "config.json")
    except ValueError as e:  # not a model id: huggingface_hub's HFValidationError
        return f"'{model}' is no Hugging Face model id ({str(e).splitlines()[0][:200]})"
    return None if cached else _download_problem(model)


def _download_problem(source: str) -> str | None:
    """Why weights that are not in the local cache cannot be downloaded now (HF_HUB_OFFLINE is set, the hub has no
    such model, or neither the hub nor the URL answers), else None: the run will download them."""
    if _offline():
        return _not_cached(source)
    try:
        if source.startswith(("http://", "https://")):
            import urllib.request

            urllib.request.urlopen(urllib.request.Request(source, method="HEAD"), timeout=HUB_TIMEOUT).close()
        else:
            from huggingface_hub import HfApi

            HfApi().model_info(source, timeout=HUB_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - any failure to reach the weights is the answer
        if type(e).__name__ in ("RepositoryNotFoundError", "GatedRepoError", "HTTPError"):
            return f"the hub has no weights at '{source[:200]}' ({type(e).__name__}); check the name"
        return (
            f"its weights ({source[:200]}) are not in the local cache and cannot be downloaded here "
            f"({type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else 'no answer'}); "
            "download them once where the hub answers, or give a local `weights:` file or folder"
        )
    return None


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in HUB_OFFLINE_ENV)


def _in_hub_cache(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename), str)


def _in_torch_cache(url: str) -> bool:
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).is_file()


def _not_cached(source: str) -> str:
    return (
        f"its weights ({source[:200]}) are not in the local cache and HF_HUB_OFFLINE is set, so they cannot be "
        "downloaded; download them once online, or give a local `weights:` file or folder"
    )


def _unwritable(path: Path) -> str | None:
    """Why a file cannot be created in ``path`` or in the nearest folder above it that exists (as ``strerror``
    says), else None. The check leaves nothing behind: an unnamed file where the file system has them."""
    folder = next(p for p in [path, *path.parents] if p.exists())
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        try:
            os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600))
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
    except OSError as e:
        why = e.strerror or str(e)
        return why if folder == path else f"{why} in {folder}"
    return None
