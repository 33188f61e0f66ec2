"""The matrix: an experiment expanded into cells (backbone x dataset x budget x strategy), each with a stable key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from bench import __version__, backbones, data
from bench.config import BackboneConfig, Experiment
from bench.strategies import STRATEGIES, Role, role_of
from bench.strategies.base import implementation


@dataclass(frozen=True)
class Cell:
    backbone: BackboneConfig
    dataset: str
    budget: int | str
    strategy: str
    modality: str
    key: str  # digest of everything that decides this cell's result
    seeds: int = 1  # final seeds it is to have: the experiment's minimum, more where racing asks (not in the key:
    # seed s trains the same whatever the count, so a cell given more seeds keeps those it has)

    @property
    def run_name(self) -> str:
        """``cifar10/mobilenetv2_100/finetune/k10``: how the cell reads in MLflow, logs and tables."""
        return f"{self.dataset}/{self.backbone.label}/{self.strategy}/k{self.budget}"

    @property
    def tags(self) -> dict[str, str]:
        return {
            "modality": self.modality,
            "backbone": self.backbone.label,
            "dataset": self.dataset,
            "budget": str(self.budget),
            "strategy": self.strategy,
            "cell_key": self.key,
        }


def dataset_manifest(name: str) -> str:
    spec = data.DATASETS.get(name)
    return data.base.manifest_of(spec.path(), spec.marker) if spec.available() else "not-downloaded"


def cell_key(exp: Experiment, backbone: BackboneConfig, dataset: str, budget: int | str, strategy: str) -> str:
    decisive = {
        "backbone": backbone.model_dump(mode="json"),
        "dataset": dataset,
        "manifest": dataset_manifest(dataset),
        "budget": budget,
        "strategy": strategy,
        "strategy_implementation": implementation(STRATEGIES.get(strategy)),
        "tuning": _without_added(exp.tuning.model_dump(mode="json"), ADDED_TUNING_OPTIONS),
        "training": training_key(exp, dataset),
        "splits": exp.splits.model_dump(mode="json"),
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


# Options added after cells were first keyed, and the value that leaves a run as it was: at that value they stay
# out of the key, so an existing results folder keeps its finished cells.
ADDED_TRAINING_OPTIONS = {"max_steps": None, "patience": None, "warmup_steps": 0, "batchnorm": "train"}
ADDED_TUNING_OPTIONS = {"first_trial": "sampled"}


def training_key(exp: Experiment, dataset: str | None = None) -> dict:
    """The training settings that decide a cell's result on ``dataset`` (not the device or thread count)."""
    training = exp.training_for(dataset) if dataset else exp.training
    return _without_added(training.model_dump(mode="json", exclude={"device", "threads"}), ADDED_TRAINING_OPTIONS)


def _without_added(settings: dict, added: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in added or v != added[k]}


def expand(exp: Experiment) -> list[Cell]:
    """Every compatible (backbone, dataset, budget, strategy), datasets outermost, scratch first per budget.

    A backbone only meets datasets of its own modality.
    """
    order = sorted(exp.strategies, key=lambda s: role_of(s) is not Role.SCRATCH)
    cells = []
    for ds in exp.datasets:
        modality = data.DATASETS.get(ds.name).modality
        for bb in exp.backbones:
            if backbones.resolve(bb.name).modality != modality:
                continue
            for budget in exp.budgets:
                for strategy in order:
                    key = cell_key(exp, bb, ds.name, budget, strategy)
                    cells.append(Cell(bb, ds.name, budget, strategy, modality, key, exp.seeds.min))
    return cells
