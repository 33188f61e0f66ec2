"""Where benchmark figures go: results/perf/<name>.json, with the machine, torch threads and library versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import environment, paths


def write(name: str, result: dict[str, Any], device: str = "cpu") -> Path:
    """Write ``result`` with the environment it was measured in; return the file."""
    out = paths.results_root() / "perf" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": environment.describe(device), **result}, indent=2))
    return out
