"""Experiment files: pydantic models, defaults resolved, every error naming the field and what is allowed."""

from __future__ import annotations

import json
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
            for key, value in data.items():
                if key not in allowed:
                    raise ValueError(cls._unknown(key))
                if isinstance(value, bool) and _is_number(cls.model_fields[key].annotation):
                    raise ValueError(f"'{key}' is a number, got {value} (YAML reads yes, no, on, off as booleans)")
        return data

    retired: ClassVar[dict[str, str]] = {}  # keys of earlier versions -> what became of them

    @classmethod
    def _unknown(cls, key: Any) -> str:
        """What is wrong with an unknown key: where it belongs, or the key it resembles, and the allowed keys."""
        allowed = list(cls.model_fields)
        if str(key) in cls.retired:
            return f"'{key}' {cls.retired[str(key)]}"
        hint = cls._nested_home(str(key)) or did_you_mean(str(key), allowed)
        return f"unknown key '{_cut(str(key))}'{hint}; allowed keys: {', '.join(allowed)}"

    @classmethod
    def _nested_home(cls, key: str) -> str:
        """' (it belongs under 'training:')' when a section of this model has a field of that name."""
        for name, info in cls.model_fields.items():
            section = info.annotation
            if isinstance(section, type) and issubclass(section, _Strict) and key in section.model_fields:
                return f" (it belongs under '{name}:')"
        return ""


def _is_number(annotation: Any) -> bool:
    """Whether a field holds a number (``int``, ``float``, or either or None)."""
    if annotation in (int, float):
        return True
    return any(a in (int, float) for a in getattr(annotation, "__args__", ()))


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

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, weights: Path | None) -> Path | None:
        if weights is not None and not weights.exists():
            raise ValueError(f"no such file or folder: {_cut(str(weights))} (a local weights file or folder)")
        return weights

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
    training: dict[str, Any] | None = Field(
        None,
        description="this dataset's own training settings over the experiment's 'training' (e.g. {max_steps: 200} "
        "where its largest budget needs longer runs); device and threads stay the experiment's",
    )


class TuningConfig(_Strict):
    n_trials: int = Field(8, ge=1, le=1000, description="Optuna trials per cell; equal for every strategy")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median",
        description="stops unpromising trials at a validation: 'median' (below the median of earlier trials at the "
        "same validation), 'hyperband' (Li et al. 2018: successive halving over brackets, so more trials fit in the "
        "same compute), or 'none'",
    )
    sampler_seed: int = Field(0, ge=0, description="seed of the TPE sampler")
    first_trial: Literal["sampled", "defaults"] = Field(
        "sampled",
        description="'defaults': each study's first trial is its strategy's documented starting point (the "
        "paper's or common practice's setting, `bench list strategies`), the search follows; 'sampled': every "
        "trial is drawn by the sampler",
    )


class TrainingConfig(_Strict):
    """How long every training run lasts (trials and final seeds alike), in epochs or optimiser steps."""

    epochs: int = Field(10, ge=1, le=1000, description="passes over the training examples per run")
    steps: int | None = Field(
        None, ge=1, le=1_000_000, description="optimiser steps per run, whatever the budget (instead of epochs)"
    )
    min_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="at least this many optimiser steps, so small budgets still train"
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="at most this many optimiser steps, so large budgets stay affordable (with early stopping, "
        "a cap; the report shows how many runs stopped at it)",
    )
    evaluations: int = Field(10, ge=1, le=1000, description="validations per run, evenly spaced")
    patience: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="early stopping: a run also validates its starting weights, stops once this many validations "
        "in a row after the warm-up, and after it has beaten its starting weights, have not beaten its best, and "
        "ends with the weights of its best validation "
        "(default: off; every run takes all its steps and keeps its last weights)",
    )
    monitor: Literal["val_acc", "val_loss"] = Field(
        "val_acc",
        description="what early stopping and the kept weights follow: validation accuracy (higher is better) or "
        "validation cross-entropy (lower is better; smoother on small validation sets)",
    )
    min_delta: float | Literal["binomial"] = Field(
        0.0,
        description="a validation counts as better only by more than this (accuracy, or nats of cross-entropy); "
        "'binomial': one standard error of a 50 % accuracy on the validation examples, 0.5 / sqrt(n_val)",
    )
    warmup_steps: int = Field(
        0, ge=0, le=1_000_000, description="optimiser steps of linear learning-rate warm-up before the cosine decay"
    )
    batchnorm: Literal["train", "frozen"] = Field(
        "train",
        description="BatchNorm while training: 'train' updates the running statistics from each batch (they adapt "
        "to the new data); 'frozen' keeps the pretrained ones (their scale and shift still train; scratch, which has "
        "none, always learns its own)",
    )
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
        if self.steps is not None and ({"epochs", "min_steps", "max_steps"} & self.model_fields_set):
            raise ValueError("give either 'steps' or 'epochs' (with optional 'min_steps' and 'max_steps'), not both")
        if self.min_steps is not None and self.max_steps is not None and self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) is above max_steps ({self.max_steps}): lower min_steps")
        return self


class SplitConfig(_Strict):
    """Which labelled examples a cell validates on, and which test examples it is measured on."""

    retired: ClassVar[dict[str, str]] = {
        "val_per_class": "drew validation examples on top of the budget; validation now comes out of the budget "
        "(splits.val_fraction, default 0.2). To validate on extra labels anyway, write splits.extra_val_per_class "
        "(the report then says so)"
    }

    val_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of each class's budget held out for validation (choosing trials and the kept step), "
        "inside the budget: VTAB-1k's 200 of 1,000",
    )
    min_val_per_class: int = Field(
        2,
        ge=1,
        description="a hold-out of fewer examples per class is none: the run then takes its fixed schedule, keeps "
        "its last weights and uses its strategy's defaults (no trials to choose between)",
    )
    extra_val_per_class: int | None = Field(
        None,
        ge=1,
        description="instead, validate on this many examples per class drawn *outside* the budget (the report says "
        "so in its first lines; default: none, validation comes out of the budget)",
    )
    test_per_class: int | None = Field(
        None,
        ge=1,
        description="a fixed stratified test subset with this many examples per class (fewer when the smallest "
        "class has fewer: every class the same, so accuracy is balanced accuracy); default: the whole test split",
    )


class SeedsConfig(_Strict):
    """How many final seeds a cell trains: ``min`` always, up to ``max`` while a comparison it takes part in is
    undecided (racing, as F-Race and irace do). A plain number ``n`` is ``{min: n, max: n}``: no racing."""

    min: int = Field(3, ge=1, le=100, description="final retrainings of the best trial that every cell gets")
    max: int | None = Field(
        None,
        ge=1,
        le=100,
        description="up to this many for the cells of a comparison (with the best strategy of its dataset and "
        "budget, or with scratch) that is still undecided after min and that more seeds are expected to decide; "
        "default: min (no racing)",
    )

    @model_validator(mode="before")
    @classmethod
    def _a_number_is_min_and_max(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError(
                f"'seeds' is a number, got {data} (YAML reads yes, no, on, off as booleans); or {{min: n, max: m}}"
            )
        if not isinstance(data, int | dict | SeedsConfig):
            raise ValueError(f"'seeds' is a number of seeds, or {{min: n, max: m}} to race; got {_cut(repr(data))}")
        return {"min": data} if isinstance(data, int) else data

    @model_validator(mode="after")
    def _max_not_below_min(self) -> SeedsConfig:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"seeds.max ({self.max}) is below seeds.min ({self.min}): raise max or lower min")
        return self

    @property
    def most(self) -> int:
        """The most seeds a cell can get."""
        return self.max if self.max is not None else self.min

    @property
    def races(self) -> bool:
        return self.most > self.min


class StatisticsConfig(_Strict):
    """How two strategies are compared (the verdicts, the gains over scratch, and which contests racing feeds)."""

    rope: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="region of practical equivalence, in accuracy (0.01 = 1 point): a difference whose interval "
        "lies inside +-rope is 'equivalent', one whose interval lies beyond it 'worse' or 'better', any other "
        "'undecided' (Kruschke 2018; Benavoli et al. 2017)",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="level of every interval and verdict")


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
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks")
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "oracle")


def check_scheme(uri: str | None, schemes: tuple[str, ...], what: str) -> str | None:
    """``uri`` when its scheme (``postgresql+psycopg`` counts as ``postgresql``) is one of ``schemes``."""
    if uri is None:
        return None
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    if scheme not in schemes:
        raise ValueError(f"{_cut(uri)} is not {what}: its scheme must be one of {', '.join(f'{s}:' for s in schemes)}")
    return uri


class Experiment(_Strict):
    """A whole experiment file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100, description="MLflow experiment and results/<name>/")
    description: str = ""
    backbones: list[BackboneConfig] = Field(min_length=1)
    datasets: list[DatasetConfig] = Field(min_length=1)
    strategies: list[str] = Field(min_length=1)
    budgets: list[Budget] = Field(min_length=1, description="training examples per class, or 'all'")
    seeds: SeedsConfig = Field(
        SeedsConfig(), description="final seeds per cell: a number, or {min, max} to race close contests"
    )
    tuning: TuningConfig = TuningConfig()
    training: TrainingConfig = TrainingConfig()
    splits: SplitConfig = SplitConfig()
    statistics: StatisticsConfig = StatisticsConfig()
    cluster: ClusterConfig = ClusterConfig()
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///results/mlflow.db")
    optuna_storage: str | None = Field(None, description="Optuna storage URL; default sqlite:///results/optuna.db")

    @field_validator("name")
    @classmethod
    def _a_folder_of_its_own(cls, name: str) -> str:
        if set(name) == {"."}:
            raise ValueError(f"'{name}' would put results outside results/<name>/; give a name with a letter or digit")
        return name

    @field_validator("backbones", "datasets")
    @classmethod
    def _listed_once(cls, entries: list[_Named]) -> list[_Named]:
        seen = set()
        for entry in entries:
            key = json.dumps(entry.model_dump(mode="json"), sort_keys=True)
            if key in seen:
                raise ValueError(f"'{entry.name}' is listed twice with the same settings; list it once")
            seen.add(key)
        return entries

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_scheme(cls, uri: str | None) -> str | None:
        return check_scheme(uri, TRACKING_SCHEMES, "an MLflow tracking URI")

    @field_validator("optuna_storage")
    @classmethod
    def _storage_scheme(cls, url: str | None) -> str | None:
        return check_scheme(url, STORAGE_SCHEMES, "an Optuna storage URL (an SQLAlchemy database URL)")

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, names: list[str]) -> list[str]:
        for name in names:
            _check_name("strategy", name)
        if len(set(names)) != len(names):
            raise ValueError("a strategy is listed twice")
        from bench import strategies

        strategies.baselines(names)  # at most one strategy of each baseline role (scratch, linear probe)
        return names

    @model_validator(mode="after")
    def _dataset_training_is_training(self) -> Experiment:
        names = [ds.name for ds in self.datasets]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"dataset '{twice[0]}' is listed twice; list it once, with its own training settings")
        for ds in self.datasets:
            for key in ds.training or {}:
                if key in ("device", "threads"):
                    raise ValueError(
                        f"dataset '{ds.name}': training.{key} is the experiment's; set it under 'training:'"
                    )
                if key not in TrainingConfig.model_fields:
                    raise ValueError(f"dataset '{ds.name}': training: {TrainingConfig._unknown(key)}")
            try:
                self.training_for(ds.name)
            except ValidationError as err:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in err.errors()
                )
                raise ValueError(f"dataset '{ds.name}': training: {problems.removeprefix(': ')}") from None
        return self

    def training_for(self, dataset: str) -> TrainingConfig:
        """The training settings of ``dataset``'s cells: the experiment's, with the dataset's own over them."""
        override = next((ds.training for ds in self.datasets if ds.name == dataset and ds.training), None)
        if not override:
            return self.training
        return TrainingConfig.model_validate({**self.training.model_dump(exclude_unset=True), **override})

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

    @field_validator("budgets", mode="before")
    @classmethod
    def _no_boolean_budgets(cls, budgets: Any) -> Any:
        for b in budgets if isinstance(budgets, list) else ():
            if isinstance(b, bool):
                raise ValueError(f"budget {b} is a boolean (YAML reads yes, no, on, off so); give a number or 'all'")
        return budgets

    @field_validator("budgets")
    @classmethod
    def _positive_budgets(cls, budgets: list[Budget]) -> list[Budget]:
        for b in budgets:
            if isinstance(b, int) and b < 1:
                raise ValueError(f"budget {b} must be a positive number of examples per class, or 'all'")
        if len(set(map(str, budgets))) != len(budgets):
            raise ValueError("a budget is listed twice")
        return budgets


def _format(err: ValidationError, source: str) -> str:
    """One line per problem: ``<file>: <field>: <what is wrong and what is allowed>``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] not in ("value_error", "assertion_error") and "input" in e:
            got = e["input"]
            msg += f" (got {_cut(repr(got))})" if not isinstance(got, dict) else ""
        lines.append(f"{source}: {_cut(loc, 120) or '(top level)'}: {_cut(msg, 400)}")
    return "\n".join(lines)


def parse(data: Any, source: str = "<experiment>") -> Experiment:
    """Validate a mapping as an experiment; raise ConfigError listing every problem, one line each: every unknown
    key (with where it belongs or what it resembles), then every wrong value of the known ones."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an experiment file must be a YAML mapping of keys to values")
    unknown: list[str] = []
    known = _known_only(Experiment, data, "", unknown)
    try:
        exp = Experiment.model_validate(known)
    except ValidationError as err:
        raise ConfigError("\n".join([*(f"{source}: {u}" for u in unknown), _format(err, source)])) from None
    if unknown:
        raise ConfigError("\n".join(f"{source}: {u}" for u in unknown))
    return exp


def _known_only(cls: type[_Strict], data: Any, loc: str, unknown: list[str]) -> Any:
    """``data`` without the keys ``cls`` and its sections do not have; each one left out is noted in ``unknown``."""
    if not isinstance(data, dict):
        return data
    kept = {}
    for key, value in data.items():
        if key not in cls.model_fields:
            unknown.append(f"{loc or '(top level)'}: {cls._unknown(key)}")
            continue
        section = _section(cls.model_fields[key].annotation)
        where = f"{loc}.{key}" if loc else str(key)
        if section is None:
            kept[key] = value
        elif isinstance(value, list):
            kept[key] = [_known_only(section, v, f"{where}.{i}", unknown) for i, v in enumerate(value)]
        else:
            kept[key] = _known_only(section, value, where, unknown)
    return kept


def _section(annotation: Any) -> type[_Strict] | None:
    """The section model of a field (``TrainingConfig``, or the item of ``list[BackboneConfig]``), if any."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, _Strict):
            return candidate
    return None


MAX_BYTES = 1_000_000  # an experiment file is a page of YAML: a bigger one is the wrong file
MAX_ALIASES = 100  # YAML aliases (*name) per file: enough to reuse settings, too few for an alias bomb
MAX_VALUES = 100_000  # values in the file once aliases are expanded
MAX_DEPTH = 32  # nesting of mappings and lists


def load(path: str | Path) -> Experiment:
    """Read and validate an experiment file. ``name`` defaults to the file's stem.

    Before any value is looked at, the file must be UTF-8 text of at most ``MAX_BYTES``; YAML with no key twice in
    one mapping, at most ``MAX_ALIASES`` aliases, ``MAX_VALUES`` values and ``MAX_DEPTH`` levels of nesting.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file (examples are in experiments/)")
    text = _text(path)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader, with limits
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_cut(str(err), 300)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be an experiment file (at most {MAX_DEPTH} levels)") from None
    except _TooMuch as err:
        raise ConfigError(f"{path}: {err}") from None
    _check_size(path, data)
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return parse(data, str(path))


def _text(path: Path) -> str:
    """The file as text, or a ConfigError saying what it is instead."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: {size / 1e6:.1f} MB; an experiment file is YAML of at most {MAX_BYTES // 1000} kB")
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: UTF-16 text (as Windows Notepad saves it); save it as UTF-8")
    if b"\0" in raw:
        raise ConfigError(f"{path}: a binary file, not YAML text; give an experiment file (see experiments/)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}; Latin-1 or Windows-1252?); "
            "save it as UTF-8"
        ) from None


class _TooMuch(Exception):
    """A file past one of the limits; the message says which."""


class _Loader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping and more than ``MAX_ALIASES`` aliases."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooMuch(f"more than {MAX_ALIASES} YAML aliases (*name); an experiment file needs a few at most")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    raise _TooMuch(
                        f"line {line}: key '{_cut(str(key))}' is given twice in one mapping (first on line "
                        f"{first[key]}); keep one"
                    )
                first[key] = line
            except TypeError:  # an unhashable key: YAML's own constructor says so
                break
        return super().construct_mapping(node, deep=deep)


def _check_size(path: Path, data: Any) -> None:
    """At most ``MAX_VALUES`` values (aliases expanded) and ``MAX_DEPTH`` levels; counted without recursion."""
    stack, values = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise ConfigError(f"{path}: more than {MAX_VALUES:,} values once YAML aliases are expanded")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{path}: nested too deeply to be an experiment file (at most {MAX_DEPTH} levels)")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"
