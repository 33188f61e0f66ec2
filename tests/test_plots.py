"""The critical-difference diagram and the score scatter: PNG files of plausible size with something drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from bench.analysis import plots, stats
from bench.strategies import Role


def _check_png(path, min_width, min_height):
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= min_width and im.height >= min_height
        assert im.width <= 4000 and im.height <= 4000
        pixels = np.asarray(im.convert("L"))
    assert (pixels < 128).mean() > 0.002  # lines and text, not a blank page


def test_cd_diagram_is_written(tmp_path):
    ranks = pd.Series({"finetune": 1.4, "l2sp": 1.9, "lora": 2.6, "linear_probe": 3.6, "scratch": 5.5})
    cd = stats.nemenyi_cd(5, 12)
    groups = stats.cd_groups(ranks, cd)
    assert any(len(g) > 1 for g in groups)
    path = plots.cd_diagram(ranks, cd, groups, "Strategies over 12 blocks", tmp_path / "cd.png")
    assert path == tmp_path / "cd.png"
    _check_png(path, 500, 150)


def test_score_scatter_is_written(tmp_path):
    rows = []
    for d, offset in (("cifar10", 0), ("flowers", 1000), ("tiny", 5)):
        for i, b in enumerate(["resnet50", "vit_b16", "convnext_t", "mobilenetv3"][: 2 if d == "tiny" else 4]):
            rows.append({"dataset": d, "budget": 10, "backbone": b, "logme": offset + i, "acc": 0.5 + 0.1 * i})
    points = pd.DataFrame(rows)
    taus = stats.rank_correlations(points, ["logme"], ["acc"], ["dataset", "budget"])
    path = plots.score_scatter(points, "logme", "acc", taus, tmp_path / "scatter.png")
    assert path == tmp_path / "scatter.png"
    _check_png(path, 500, 300)


def test_every_strategy_of_the_default_gets_its_own_colour_and_scratch_is_black():
    names = ["scratch", "feature_extraction", "finetune", "l1", "l2", "l1sp", "l2sp", "lp_ft", "partial"]
    colours = plots.strategy_colours([*names, "layerwise_lr", "bitfit", "lora", "bss", "delta"])
    assert colours["scratch"] == "black"
    others = [tuple(c) for name, c in colours.items() if name != "scratch"]
    assert len(others) == 13 and len(set(others)) == 13  # matplotlib's own cycle repeats after 10


def _panel(accuracy: dict[str, list[float]], dataset="cifar10", backbone="b") -> pd.DataFrame:
    """``stats.cells``-like rows of one dataset and backbone at 5, 20 and 100 examples per class."""
    return pd.DataFrame(
        [
            {
                "dataset": dataset,
                "backbone": backbone,
                "budget": str(k),
                "per_class": float(k),
                "strategy": name,
                "acc_mean": acc,
                "acc_ci_low": acc - 0.05,
                "acc_ci_high": acc + 0.05,
            }
            for name, accs in accuracy.items()
            for k, acc in zip((5, 20, 100), accs, strict=True)
        ]
    )


def test_the_accuracy_curves_draw_the_baselines_and_the_best_strongly_and_the_rest_faint(tmp_path):
    others = {f"s{i}": [0.3 + 0.01 * i, 0.4, 0.5] for i in range(9)}
    table = pd.concat(
        [
            _panel(
                {"scratch": [0.1, 0.15, 0.2], "feature_extraction": [0.4, 0.5, 0.55], "l2": [0.35, 0.5, 0.7]} | others
            ),
            _panel({"scratch": [0.2, 0.3, 0.4], "feature_extraction": [0.9, 0.9, 0.9], **others}, dataset="fsdd"),
        ]
    )
    roles = {Role.SCRATCH: "scratch", Role.PROBE: "feature_extraction"}
    cifar, fsdd = (table[table.dataset == d] for d in ("cifar10", "fsdd"))
    assert plots.emphasised(cifar, roles) == ["scratch", "feature_extraction", "l2"]  # the best of the others
    assert plots.emphasised(fsdd, roles) == [
        "scratch",
        "feature_extraction",
        "s8",
    ]  # the probe leads: still the best other
    assert plots.emphasised(cifar, {}) == ["l2"]  # no baseline role among them
    path = plots.accuracy_curves(table, tmp_path / "curves.png", roles)
    _check_png(path, 1000, 300)


def test_accuracy_against_compute_is_written_with_a_budget_per_point(tmp_path):
    spent = _panel({"scratch": [0.1, 0.15, 0.2], "feature_extraction": [0.4, 0.5, 0.55], "l2": [0.35, 0.5, 0.7]})
    spent["seconds_per_run"] = np.tile([1.0, 3.0, 20.0], 3)
    path = plots.accuracy_vs_compute(spent, tmp_path / "compute.png")
    _check_png(path, 800, 300)


def test_the_baseline_colour_follows_the_role_not_the_name():
    colours = plots.strategy_colours(["from_zero", "finetune", "scratch"], {Role.SCRATCH: "from_zero"})
    assert colours["from_zero"] == "black" and not isinstance(colours["scratch"], str)  # an RGBA of the map
