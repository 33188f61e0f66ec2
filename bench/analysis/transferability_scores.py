"""Transferability scores of an experiment's pretrained backbones, computed without training anything: what
`bench rank` prints, and what the report sets against the accuracies the strategies then reached.

A row per (backbone, dataset, budget, seed): the estimators of ``bench.analysis.transferability`` on the frozen
backbone's features of that seed's *training* examples (the ones every strategy at that seed trains on; validation
and test examples are never read) and, for LEEP and NCE, its source classifier's predictions on them. Features come from
the feature cache, so scoring a backbone that a linear probe already ran on costs seconds. The rows of an
experiment are kept in ``results/<experiment>/transferability.csv``, each under a key of everything that decides it
(backbone, dataset files, budget, seed, split sizes, the estimators' code), so a report recomputes only rows it
lacks.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench import backbones, data, paths
from bench.analysis import transferability
from bench.config import BackboneConfig, Experiment
from bench.data import LoadedDataset
from bench.features import cached_features, weights_digest
from bench.matrix import expand
from bench.strategies import STRATEGIES, Role, baselines
from bench.training_run import pick_device, split_of

SCORES = list(transferability.ESTIMATORS)
COLUMNS = ["modality", "dataset", "backbone", "budget", "seed", "n_train", *SCORES, "skipped", "key"]
FILE = "transferability.csv"
_CODE = hashlib.sha256(inspect.getsource(transferability).encode()).hexdigest()[:12]


def row_key(exp: Experiment, bb: BackboneConfig, dataset: LoadedDataset, budget: int | str, seed: int) -> str:
    """Everything that decides a row's scores."""
    decisive = {
        "backbone": bb.model_dump(mode="json"),
        "manifest": dataset.manifest,
        "budget": budget,
        "seed": seed,
        "splits": exp.splits.model_dump(mode="json"),
        "estimators": _CODE,
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def score_split(
    backbone: backbones.Backbone,
    dataset: LoadedDataset,
    train: np.ndarray,
    batch_size: int,
    device: torch.device,
    digest: str | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Every estimator on the frozen ``backbone``'s features of ``dataset``'s training examples ``train``;
    ``digest`` is ``weights_digest(backbone)`` when the caller has it already."""
    feats = cached_features(
        backbone,
        dataset.train_items,
        dataset.train_labels,
        train,
        dataset.manifest,
        "train",
        batch_size,
        device,
        digest=digest,
    )
    head = backbone.source_head()
    probs = None if head is None else torch.softmax(head(feats), dim=1).double().numpy()
    return transferability.score_all(feats.double().numpy(), dataset.train_labels[train], probs)


def score_experiment(exp: Experiment, say: Callable[[str], None] = lambda msg: None) -> pd.DataFrame:
    """The rows of every (backbone, dataset, budget) that a pretrained strategy of ``exp`` trains, at each of its
    seeds; rows already in the experiment's transferability.csv are reused, the others computed and added."""
    groups = dict.fromkeys(
        (c.backbone, c.dataset, c.budget) for c in expand(exp) if STRATEGIES.get(c.strategy).pretrained
    )
    path = paths.experiment_dir(exp.name) / FILE
    known = read(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)
    rows = score_groups(exp, list(groups), known.set_index("key", drop=False), say)
    with paths.atomic_file(path) as tmp:
        rows.to_csv(tmp, index=False)  # full precision: a row read back is the row computed
    return rows


def read(path) -> pd.DataFrame:
    """A transferability.csv as ``score_experiment`` wrote it."""
    types = {"key": str, "budget": str, "skipped": str, "seed": int, "n_train": int, **dict.fromkeys(SCORES, float)}
    return pd.read_csv(path, dtype=types, keep_default_na=False, na_values=[""]).fillna({"skipped": ""})


def score_groups(
    exp: Experiment,
    groups: list[tuple[BackboneConfig, str, int | str]],
    known: pd.DataFrame | None = None,
    say: Callable[[str], None] = lambda msg: None,
) -> pd.DataFrame:
    """Rows for each (backbone, dataset, budget) at seeds ``0 .. exp.seeds.min - 1``, taking those in ``known``
    (indexed by key) as they are. A dataset is loaded, and a backbone built, once."""
    device = pick_device(exp.training.device)
    loaded: dict[str, LoadedDataset] = {}
    rows: list[dict[str, Any]] = []
    for bb, name, budget in groups:
        if name not in loaded:
            loaded[name] = data.DATASETS.get(name).load()
        ds, backbone, digest = loaded[name], None, None
        for seed in range(exp.seeds.min):
            key = row_key(exp, bb, ds, budget, seed)
            if known is not None and key in known.index:
                rows.append(known.loc[key].to_dict())
                continue
            if backbone is None:
                say(f"scoring {bb.name} on {name}")
                backbone = backbones.build(bb.name, True, bb.weights, **bb.options()).to(device)
                digest = weights_digest(backbone)  # the features' cache key: hashed once, not at every seed
            split = split_of(exp, ds, budget, seed)
            values, skipped = score_split(backbone, ds, split.train, exp.training.batch_size, device, digest)
            rows.append(
                {
                    "modality": ds.modality,
                    "dataset": name,
                    "backbone": bb.label,
                    "budget": str(budget),
                    "seed": seed,
                    "n_train": len(split.train),
                    **{s: values.get(s, np.nan) for s in SCORES},
                    "skipped": "; ".join(f"{s}: {why}" for s, why in skipped.items()),
                    "key": key,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


TIE_DECIMALS = 9  # means equal to this many decimals tie: H-score at its maximum differs only by float noise


def per_backbone(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean (rounded to ``TIE_DECIMALS``) and standard deviation of each score over seeds, per (dataset, budget,
    backbone)."""
    group = ["modality", "dataset", "budget", "backbone"]
    mean = rows.groupby(group, sort=False)[SCORES].mean().round(TIE_DECIMALS)
    std = rows.groupby(group, sort=False)[SCORES].std(ddof=1).add_suffix("_std")
    return mean.join(std).reset_index()


def against_outcomes(rows: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, budget, backbone): the mean scores beside the realised test accuracy of the linear probe
    (``probe``: the strategy of ``Role.PROBE``) and of the best strategy that fine-tunes the backbone
    (``best_finetune``: each backbone's own best, named in ``best_finetune_strategy``), from ``stats.cells``."""
    points = per_backbone(rows)
    tuned = [
        s for s in table.strategy.unique() if STRATEGIES.get(s).pretrained and not STRATEGIES.get(s).frozen_backbone
    ]
    key = ["dataset", "budget", "backbone"]
    probe_name = baselines(table.strategy.unique()).get(Role.PROBE)
    probe = table[table.strategy == probe_name].set_index(key)["acc_mean"].rename("probe")
    best = table[table.strategy.isin(tuned)].sort_values("acc_mean").groupby(key).tail(1).set_index(key)
    points = points.join(probe, on=key).join(best["acc_mean"].rename("best_finetune"), on=key)
    return points.join(best["strategy"].rename("best_finetune_strategy"), on=key)
