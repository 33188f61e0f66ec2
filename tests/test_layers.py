"""Data flows one way through bench's modules: no module imports one that imports it back, at module level or
inside a function, and what trains one cell lives below the execution layer, with the runner on top of both."""

from __future__ import annotations

import ast
from pathlib import Path

import bench

ROOT = Path(bench.__file__).parent


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each bench module and the bench modules it imports (``from bench.x import y`` counts as ``bench.x.y`` where
    that is a module, else as ``bench.x``; a package's ``__init__`` is a module of its own)."""
    modules = {_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[module] |= {t for t in targets if t in modules and t != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (found := visit(t)):
                return found
        state[m] = 2
        path.pop()
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m))), None)


def test_no_module_imports_one_that_imports_it_back():
    assert _cycle(_imports()) is None, " -> ".join(_cycle(_imports()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_layers_import_downward_only():
    graph = _imports()
    execution = {m for m in graph if m.startswith("bench.execution")}
    assert "bench.cell" in graph["bench.execution.worker"]  # one cell's training sits below the execution layer
    assert "bench.execution" in graph["bench.runner"]  # and the runner on top of it
    for module in ["bench.cell", "bench.training_run", "bench.loop", "bench.tuning", "bench.tracking", "bench.stores"]:
        assert not graph[module] & (execution | {"bench.runner", "bench.cli"}), module
    for module in execution:
        assert not graph[module] & {"bench.runner", "bench.cli"}, module


def test_the_analysis_reads_results_and_never_runs_work():
    graph = _imports()
    analysis = {m for m in graph if m.startswith("bench.analysis")}
    assert {"bench.analysis.comparison", "bench.analysis.stats", "bench.analysis.report"} <= analysis
    running = {m for m in graph if m.startswith("bench.execution")} | {"bench.runner", "bench.cli", "bench.cell"}
    for module in analysis:
        assert not graph[module] & running, module
