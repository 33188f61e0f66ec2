"""Experiment files: pydantic models, defaults resolved, every error naming the field and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.registry import UnknownNameError, did_you_mean


class ConfigError(Exception):
    """An experiment file that cannot be used; the message lists every problem, one per line."""


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors that name the allowed keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in allowed:
                    hint = cls._nested_home(str(key)) or did_you_mean(str(key), allowed)
                    raise ValueError(f"unknown key '{key}'{hint}; allowed keys: {', '.join(allowed)}")
        return data

    @classmethod
    def _nested_home(cls, key: str) -> str:
        """' (it belongs under 'training:')' when a section of this model has a field of that name."""
        for name, info in cls.model_fields.items():
            section = info.annotation
            if isinstance(section, type) and issubclass(section, _Strict) and key in section.model_fields:
                return f" (it belongs under '{name}:')"
        return ""


def _check_name(kind: str, name: str) -> str:
    from bench import backbones, data, strategies

    lookup = {"backbone": backbones.resolve, "dataset": data.DATASETS.get, "strategy": strategies.STRATEGIES.get}
    try:
        lookup[kind](name)
    except UnknownNameError as err:
        raise ValueError(str(err)) from None
    return name


OPTIONS_BY_MODALITY = {"image": "input_size", "text": "max_length", "audio": "clip_seconds"}


class _Named(_Strict):
    """A section naming a registered entry of ``kind``; a bare string is short for ``{name: ...}``."""

    kind: ClassVar[str]
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return _check_name(cls.kind, name)


class BackboneConfig(_Named):
    """A backbone by registered name (``bench list backbones``) or ``<hub>:<model>`` (``timm:``, ``hf:``, ...)."""

    kind = "backbone"
    weights: Path | None = Field(None, description="local weights file or folder used instead of the default source")
    input_size: int | None = Field(
        None, ge=16, le=1024, description="image backbones: side in pixels; default: the pretrained config"
    )
    max_length: int | None = Field(None, ge=8, le=8192, description="text backbones: tokens kept per example")
    clip_seconds: float | None = Field(
        None, gt=0, le=60, description="audio backbones: clips are padded or cropped to this length"
    )

    @model_validator(mode="after")
    def _options_fit_the_modality(self) -> BackboneConfig:
        from bench import backbones

        modality = backbones.resolve(self.name).modality
        for other, option in OPTIONS_BY_MODALITY.items():
            if other != modality and getattr(self, option) is not None:
                raise ValueError(
                    f"'{option}' applies to {other} backbones, but '{self.name}' is a {modality} backbone "
                    f"(its option is '{OPTIONS_BY_MODALITY[modality]}')"
                )
        return self

    def options(self) -> dict[str, Any]:
        """The modality's option when set, as keyword arguments for the backbone's builder."""
        option = {k: getattr(self, k) for k in OPTIONS_BY_MODALITY.values()}
        return {k: v for k, v in option.items() if v is not None}

    @property
    def label(self) -> str:
        """Short name for run names and tables (``timm:resnet18.a1_in1k`` -> ``resnet18.a1_in1k``)."""
        return self.name.split(":", 1)[-1]


class DatasetConfig(_Named):
    kind = "dataset"


class TuningConfig(_Strict):
    n_trials: int = Field(8, ge=1, le=1000, description="Optuna trials per cell; equal for every strategy")
    pruner: Literal["median", "none"] = "median"
    sampler_seed: int = Field(0, ge=0, description="seed of the TPE sampler")


class TrainingConfig(_Strict):
    """How long every training run lasts (trials and final seeds alike), in epochs or optimiser steps."""

    epochs: int = Field(10, ge=1, le=1000, description="passes over the training examples per run")
    steps: int | None = Field(
        None, ge=1, le=1_000_000, description="optimiser steps per run, whatever the budget (instead of epochs)"
    )
    min_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="at least this many optimiser steps, so small budgets still train"
    )
    evaluations: int = Field(10, ge=1, le=1000, description="validations per run (at most one per epoch)")
    batch_size: int = Field(32, ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    threads: int = Field(
        1,
        ge=1,
        le=1024,
        description="torch threads per training run; part of the protocol, since the thread count changes the "
        "order of float sums and so the results; workers fill the cores (default 1)",
    )

    @model_validator(mode="after")
    def _one_length(self) -> TrainingConfig:
        if self.steps is not None and ({"epochs", "min_steps"} & self.model_fields_set):
            raise ValueError("give either 'steps' or 'epochs' (with an optional 'min_steps'), not both")
        return self


class SplitConfig(_Strict):
    val_per_class: int = Field(20, ge=1, description="validation examples per class, drawn from the training pool")
    test_per_class: int | None = Field(
        None, ge=1, description="cap on test examples per class (a fixed stratified subset); default: all"
    )


class ClusterConfig(_Strict):
    """Where cells run when not on this machine's own workers: a Ray cluster, and each cell's share of its GPUs."""

    ray: str | None = Field(
        None,
        description="'local' starts a Ray cluster on this machine, 'auto' joins the one running here, "
        "'ray://host:10001' or 'host:6379' joins a remote one; default: no Ray (local workers); --ray overrides",
    )
    gpus_frozen: float = Field(
        0.25, ge=0, le=64, description="GPUs a cell asks for when its backbone stays frozen (feature_extraction)"
    )
    gpus_trained: float = Field(1.0, ge=0, le=64, description="GPUs a cell asks for when it trains the backbone")

    @field_validator("ray")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        return None if address is None else check_ray_address(address)

    @field_validator("gpus_frozen", "gpus_trained")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        if gpus > 1 and gpus != int(gpus):
            raise ValueError(f"{gpus} GPUs: Ray shares a GPU only below 1; above it, give a whole number")
        return gpus


def check_ray_address(address: str) -> str:
    """``local``, ``auto``, ``ray://host:port`` or ``host:port``; else a ValueError saying so."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address in ("local", "auto") or (host and port.isdigit()):
        return address
    raise ValueError(
        f"Ray address {address[:80]!r}: give 'local' (start a cluster here), 'auto' (join the one running here), "
        "'ray://host:10001' (Ray client) or 'host:6379' (a head node's address)"
    )


Budget = int | Literal["all"]


class Experiment(_Strict):
    """A whole experiment file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="MLflow experiment and results/<name>/")
    description: str = ""
    backbones: list[BackboneConfig] = Field(min_length=1)
    datasets: list[DatasetConfig] = Field(min_length=1)
    strategies: list[str] = Field(min_length=1)
    budgets: list[Budget] = Field(min_length=1, description="training examples per class, or 'all'")
    seeds: int = Field(3, ge=1, le=100, description="final retrainings of the best trial, one per seed")
    tuning: TuningConfig = TuningConfig()
    training: TrainingConfig = TrainingConfig()
    splits: SplitConfig = SplitConfig()
    cluster: ClusterConfig = ClusterConfig()
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///results/mlflow.db")
    optuna_storage: str | None = Field(None, description="Optuna storage URL; default sqlite:///results/optuna.db")

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, names: list[str]) -> list[str]:
        for name in names:
            _check_name("strategy", name)
        if len(set(names)) != len(names):
            raise ValueError("a strategy is listed twice")
        return names

    @model_validator(mode="after")
    def _every_dataset_has_a_backbone(self) -> Experiment:
        from bench import backbones, data

        have = {backbones.resolve(b.name).modality for b in self.backbones}
        for ds in self.datasets:
            modality = data.DATASETS.get(ds.name).modality
            if modality not in have:
                raise ValueError(
                    f"dataset '{ds.name}' is {modality}, but no backbone in 'backbones' is; add a {modality} "
                    "backbone (see `bench list backbones`) or remove the dataset"
                )
        return self

    @field_validator("budgets")
    @classmethod
    def _positive_budgets(cls, budgets: list[Budget]) -> list[Budget]:
        for b in budgets:
            if isinstance(b, int) and b < 1:
                raise ValueError(f"budget {b} must be a positive number of examples per class, or 'all'")
        if len(set(map(str, budgets))) != len(budgets):
            raise ValueError("a budget is listed twice")
        return budgets


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] not in ("value_error", "assertion_error") and "input" in e:
            got = e["input"]
            msg += f" (got {got!r})" if not isinstance(got, dict) else ""
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse(data: Any, source: str = "<experiment>") -> Experiment:
    """Validate a mapping as an experiment; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an experiment file must be a YAML mapping of keys to values")
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source} is not a valid experiment file:\n{_format(err)}") from None


def load(path: str | Path) -> Experiment:
    """Read and validate an experiment file. ``name`` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file (examples are in experiments/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return parse(data, str(path))
