"""What a benchmark ran on: package versions, the project's commit and lockfile, CPU, device and torch threads; and
setting the thread count.

On a 2-core machine a torch process with 2 threads slows down 10x or more as soon as another process competes
for a core, so the thread count is chosen, not left to chance: the cores this process may use (divided among
its workers), or the experiment's ``training.threads``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "timm", "transformers", "torchaudio", "mlflow", "optuna", "transferbench")
REPOSITORY = Path(__file__).resolve().parents[1]  # the checkout the bench package is imported from
LOCKFILE = "requirements.lock"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None = None, workers: int = 1) -> int:
    """Give torch ``threads`` intra-op threads (default: this process's share of the cores); return the number."""
    import torch

    n = threads or max(1, available_cores() // max(1, workers))
    torch.set_num_threads(n)
    return n


@functools.cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(root: Path, *args: str) -> str | None:
    """What ``git args`` prints in ``root``, stripped; None without git, or when it fails (e.g. no repository)."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(root: Path) -> str:
    """``git rev-parse HEAD`` of the repository whose top folder is ``root``, with ``-dirty`` when a tracked file
    has changes (untracked files do not count); "unknown" without git, or when ``root`` is not a repository's top
    folder (a package installed into site-packages inside some other repository is not that repository's code)."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return "unknown"
    commit = _git(root, "rev-parse", "HEAD")
    changes = _git(root, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    if commit is None or changes is None:
        return "unknown"  # e.g. a repository without a commit yet
    return f"{commit}-dirty" if changes else commit


def lockfile_digest(root: Path) -> str:
    """The first 16 hex digits of the SHA-256 of ``root``'s requirements.lock; "none" when it has none."""
    path = root / LOCKFILE
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "none"


@functools.cache
def checkout() -> dict[str, str]:
    """The commit and lockfile digest of the checkout this process imported the bench package from, read once."""
    return {"git_commit": git_commit(REPOSITORY), "lockfile": lockfile_digest(REPOSITORY)}


def describe(device: str) -> dict[str, str]:
    """Everything about the machine and software that can change a figure, as flat strings (MLflow tags)."""
    import torch

    info = {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}, **checkout()}
    info |= {
        "torch": torch.__version__,  # with its build (e.g. +cu130)
        "device": device,
        "cpu": cpu_model(),
        "cores": str(available_cores()),
        "threads": str(torch.get_num_threads()),
        "platform": f"{platform.system()} {platform.machine()}",
    }
    return info


def summary_line(info: dict[str, str]) -> str:
    """One line for a report header (the commit and lockfile only where ``info`` has them: older cells lack them)."""
    packages = ", ".join(f"{p} {info[p]}" for p in PACKAGES if p in info)
    line = (
        f"{info['platform']}, {info['cpu']} ({info['cores']} cores, torch threads: {info['threads']}), "
        f"device {info['device']}; Python {info['python']}, {packages}"
    )
    if "git_commit" in info:
        lock = "no requirements.lock" if info["lockfile"] == "none" else f"requirements.lock {info['lockfile']}"
        line += f"; git commit {info['git_commit']}, {lock}"
    return line
