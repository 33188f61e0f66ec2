"""The benchmarks `make perf` runs (and the others in benchmarks/) import against the current code: a module that
moved breaks them before any timing starts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_a_benchmark_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(name)
    assert module.__file__ == str(BENCHMARKS / f"{name}.py")
    assert name == "record" or callable(getattr(module, "main", None)), f"benchmarks/{name}.py has no main()"
