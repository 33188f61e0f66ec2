"""Finished work on disk: one JSON file per cell and per final seed, so a stopped run resumes where it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import paths
from bench.matrix import Cell


def _write(path: Path, record: dict[str, Any]) -> None:
    with paths.atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def cells_dir(experiment: str) -> Path:
    """Where the experiment's cells are kept (not created here: a look for finished cells writes nothing)."""
    return paths.results_root() / experiment / "cells"


def cell_path(experiment: str, cell: Cell) -> Path:
    return cells_dir(experiment) / f"{cell.key}.json"


def seed_path(experiment: str, cell: Cell, seed: int) -> Path:
    return cells_dir(experiment) / cell.key / f"seed{seed}.json"


def is_finished(experiment: str, cell: Cell) -> bool:
    """Whether the cell's record holds at least the ``cell.seeds`` final seeds it is to have."""
    record = load_cell(experiment, cell)
    return record is not None and len(record["seeds"]) >= cell.seeds


def load_cell(experiment: str, cell: Cell) -> dict[str, Any] | None:
    return _read(cell_path(experiment, cell))


def save_cell(experiment: str, cell: Cell, record: dict[str, Any]) -> None:
    _write(cell_path(experiment, cell), record)


def load_seed(experiment: str, cell: Cell, seed: int) -> dict[str, Any] | None:
    return _read(seed_path(experiment, cell, seed))


def saved_seeds(experiment: str, cell: Cell, seeds: int) -> dict[int, dict[str, Any]]:
    """The records of the cell's final seeds among ``0..seeds-1`` that were saved, by seed."""
    return {s: r for s in range(seeds) if (r := load_seed(experiment, cell, s)) is not None}


def save_seed(experiment: str, cell: Cell, seed: int, record: dict[str, Any]) -> None:
    _write(seed_path(experiment, cell, seed), record)


def failure_path(experiment: str, cell: Cell) -> Path:
    return cells_dir(experiment) / f"{cell.key}.failed.json"


def save_failure(experiment: str, cell: Cell, run_id: str, message: str) -> None:
    """Mark ``cell`` failed in run ``run_id``, so that run's other workers move on (the next ``bench run`` opens the
    cell again, and its spent trials fail it at once)."""
    _write(failure_path(experiment, cell), {"run_id": run_id, "error": message})


def failed_in(experiment: str, cell: Cell, run_id: str) -> bool:
    record = _read(failure_path(experiment, cell))
    return record is not None and record["run_id"] == run_id
