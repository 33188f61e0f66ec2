"""Matplotlib figures: a run's confusion matrix, and the report's heatmap, curves and ranks."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_png(cm: list[list[int]], classes: list[str], title: str, path: Path) -> Path:
    cm = np.asarray(cm)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    if len(classes) <= 12:
        for i, j in np.ndindex(cm.shape):
            ax.text(
                j,
                i,
                cm[i, j],
                ha="center",
                va="center",
                fontsize=7,
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    fig.colorbar(im, ax=ax, label="test examples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gain_heatmap(gains, path: Path) -> Path:
    """Strategy x (dataset, backbone, budget): mean paired gain over scratch in accuracy points."""
    wide = gains.assign(col=gains.dataset + "\n" + gains.backbone + "\nk=" + gains.budget.astype(str)).pivot_table(
        index="strategy", columns="col", values="gain", sort=False
    )
    values = 100 * wide.to_numpy()
    limit = max(1.0, float(np.nanmax(np.abs(values))))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * wide.shape[1] + 2.5), 0.45 * wide.shape[0] + 2.2))
    im = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(wide.shape[1]), wide.columns, fontsize=7)
    ax.set_yticks(range(wide.shape[0]), wide.index, fontsize=8)
    for i, j in np.ndindex(values.shape):
        if not np.isnan(values[i, j]):
            dark = abs(values[i, j]) > 0.6 * limit
            ax.text(
                j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=7, color="white" if dark else "black"
            )
    ax.set_title("Gain over training from scratch (test accuracy points, mean over paired seeds)", fontsize=10)
    fig.colorbar(im, ax=ax, label="accuracy points vs scratch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_curves(table, path: Path) -> Path:
    """Test accuracy against training examples per class, one panel per dataset and backbone, 95 % CI bands."""
    panels = list(table.groupby(["dataset", "backbone"], sort=False))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, ((dataset, backbone), df) in zip(axes.flat, panels, strict=False):
        for strategy, s in df.sort_values("per_class").groupby("strategy", sort=True):
            style = {"color": "black", "linestyle": "--", "linewidth": 2} if strategy == "scratch" else {}
            line = ax.plot(s.per_class, 100 * s.acc_mean, marker="o", markersize=3, label=strategy, **style)[0]
            if s.acc_ci_low.notna().any():
                ax.fill_between(
                    s.per_class, 100 * s.acc_ci_low, 100 * s.acc_ci_high, alpha=0.12, color=line.get_color()
                )
        ax.set_xscale("log")
        ticks = sorted(df.per_class.unique())
        ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training examples per class (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{dataset} / {backbone}", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(7, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if rows == 1 else 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rank_bars(ranks, path: Path) -> Path:
    """Mean rank of each strategy across all (dataset, backbone, budget) groups; 1 is best."""
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(ranks) + 1.5))
    colors = ["black" if s == "scratch" else "tab:blue" for s in ranks.strategy]
    ax.barh(ranks.strategy, ranks.mean_rank, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("mean rank by test accuracy (1 = best)")
    ax.set_title(f"Strategy ranks over {int(ranks.groups.max())} dataset/backbone/budget groups", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
