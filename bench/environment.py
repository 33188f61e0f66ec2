"""What a benchmark ran on: package versions, CPU, device and torch threads; and setting the thread count.

On a 2-core machine a torch process with 2 threads slows down 10x or more as soon as another process competes
for a core, so the thread count is chosen, not left to chance: the cores this process may use (divided among
its workers), or the experiment's ``training.threads``.
"""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata

PACKAGES = ("torch", "timm", "transformers", "torchaudio", "mlflow", "optuna", "transferbench")


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


def describe(device: str) -> dict[str, str]:
    """Everything about the machine and software that can change a figure, as flat strings (MLflow tags)."""
    import torch

    info = {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}}
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
    """One line for a report header."""
    packages = ", ".join(f"{p} {info[p]}" for p in PACKAGES if p in info)
    return (
        f"{info['platform']}, {info['cpu']} ({info['cores']} cores, torch threads: {info['threads']}), "
        f"device {info['device']}; Python {info['python']}, {packages}"
    )
