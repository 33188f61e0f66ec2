"""Matplotlib figures: a run's confusion matrix, and the report's heatmap, curves, ranks, critical-difference
diagram and transferability-score scatter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from bench.strategies import Role, baselines  # noqa: E402


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


def _roles(strategies, roles: dict[Role, str] | None) -> dict[Role, str]:
    return baselines(set(strategies)) if roles is None else roles


def strategy_colours(strategies, roles: dict[Role, str] | None = None) -> dict[str, Any]:
    """A colour per strategy, the same in a report's plots and distinct up to 20 strategies (matplotlib's default cycle
    repeats after 10); scratch (``Role.SCRATCH`` in ``roles``, by default the baselines among ``strategies``), the
    baseline, in black."""
    scratch = _roles(strategies, roles).get(Role.SCRATCH)
    names = sorted(set(strategies) - {scratch})
    colours = dict(zip(names, plt.cm.tab20(np.linspace(0, 1, max(1, len(names)))), strict=False))
    return colours | ({scratch: "black"} if scratch else {})


def emphasised(df, roles: dict[Role, str]) -> list[str]:
    """The strategies a panel of ``df`` (``stats.cells`` rows of one dataset and backbone) draws strongly: its
    baselines (scratch, the probe) and the best of the others, the highest mean accuracy over the budgets where
    every other strategy ran (ties: the first name)."""
    present = set(df.strategy)
    strong = [name for role in (Role.SCRATCH, Role.PROBE) if (name := roles.get(role)) in present]
    others = df[~df.strategy.isin(strong)]
    if len(others):
        wide = others.pivot_table(index="budget", columns="strategy", values="acc_mean")
        shared = wide.dropna()
        means = (shared if len(shared) else wide).mean()
        strong.append(min(means.index, key=lambda name: (-means[name], name)))
    return strong


DODGE = 0.1  # how far apart the strongly drawn strategies' points sit at one budget, in natural-log units
FAINT = {"linewidth": 0.9, "alpha": 0.4}  # the strategies a panel does not draw strongly


def accuracy_curves(table, path: Path, roles: dict[Role, str] | None = None) -> Path:
    """Test accuracy against training examples per class (log scale), one panel per dataset and backbone. The
    baselines and the panel's best other strategy (``emphasised``) are drawn strongly with their 95 % intervals as
    error bars, slightly dodged so that none hides another; every other strategy is a faint thin line. One legend
    beside the panels."""
    panels = list(table.groupby(["dataset", "backbone"], sort=False))
    roles = _roles(table.strategy, roles)
    colours = strategy_colours(table.strategy.unique(), roles)
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols + 2.6, 3.9 * rows), squeeze=False)
    strong_anywhere: set[str] = set()
    for ax, ((dataset, backbone), df) in zip(axes.flat, panels, strict=False):
        strong = emphasised(df, roles)
        strong_anywhere.update(strong)
        for strategy, s in df.sort_values("per_class").groupby("strategy", sort=True):
            if strategy not in strong:
                ax.plot(s.per_class, 100 * s.acc_mean, color=colours[strategy], **FAINT)
        for i, strategy in enumerate(strong):
            s = df[df.strategy == strategy].sort_values("per_class")
            x = s.per_class * np.exp(DODGE * (i - (len(strong) - 1) / 2))
            y, low, high = 100 * s.acc_mean, 100 * s.acc_ci_low, 100 * s.acc_ci_high
            bars = np.vstack([y - low, high - y]) if s.acc_ci_low.notna().all() else None
            ax.errorbar(
                x, y, yerr=bars, capsize=3, elinewidth=1.2, zorder=3, **_strong(colours[strategy], strategy, roles)
            )
        _budget_axis(ax, sorted(df.per_class.unique()))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(
            f"{dataset} / {backbone}" + (f"\nbest other strategy: {strong[-1]}" if strong else ""), fontsize=10
        )
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    note = (
        "bold: the baselines and each panel's\nbest other strategy, with 95 % intervals;\nfaint: the other strategies"
    )
    _side_legend(fig, colours, strong_anywhere, roles, note)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _strong(colour, strategy: str, roles: dict[Role, str]) -> dict[str, Any]:
    """The style of a strongly drawn strategy: scratch dashed, every one with round markers."""
    dashed = "--" if strategy == roles.get(Role.SCRATCH) else "-"
    return {"color": colour, "linestyle": dashed, "linewidth": 2, "marker": "o", "markersize": 4}


def _budget_axis(ax, ticks: list[float]) -> None:
    """A log axis of training examples per class, ticked at the budgets measured."""
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(min(ticks) / 1.35, max(ticks) * 1.35)
    ax.set_xlabel("training examples per class (log scale)")


def _side_legend(fig, colours: dict[str, Any], strong: set[str], roles: dict[Role, str], title: str, extra=()) -> None:
    """One legend right of the panels: the baselines first (with their roles), then the other strategies, each drawn
    as it is where it is strong (faint where it never is); then ``extra`` (handle, label) pairs."""
    first = [name for role in (Role.SCRATCH, Role.PROBE) if (name := roles.get(role)) in colours]
    role_of = {name: role for role, name in roles.items()}
    entries = []
    for name in first + sorted(set(colours) - set(first)):
        style = _strong(colours[name], name, roles) if name in strong else {"color": colours[name], **FAINT}
        label = f"{name} ({role_of[name].value})" if name in role_of else name
        entries.append((Line2D([], [], **style), label))
    handles, labels = zip(*entries, *extra, strict=True)
    fig.tight_layout()
    fig.legend(
        handles,
        labels,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        frameon=False,
        title=title,
        title_fontsize=8,
        alignment="left",
    )


def rank_bars(ranks, path: Path, roles: dict[Role, str] | None = None) -> Path:
    """Mean rank of each strategy across all (dataset, backbone, budget) groups; 1 is best."""
    scratch = _roles(ranks.strategy, roles).get(Role.SCRATCH)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(ranks) + 1.5))
    colors = ["black" if s == scratch else "tab:blue" for s in ranks.strategy]
    ax.barh(ranks.strategy, ranks.mean_rank, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("mean rank by test accuracy (1 = best)")
    ax.set_title(f"Strategy ranks over {int(ranks.groups.max())} dataset/backbone/budget groups", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cd_diagram(
    mean_ranks, cd: float, groups: list[list[str]], title: str, path: Path, roles: dict[Role, str] | None = None
) -> Path:
    """Demšar's critical-difference diagram: the mean ranks on an axis with rank 1 (best) at the left, each
    strategy a labelled tick, a thick bar under each group of ``cd_groups`` (groups of two or more; strategies
    under one bar are not significantly different) and the critical difference drawn above the axis."""
    ranks = mean_ranks.dropna().sort_values(kind="stable")
    scratch = _roles(ranks.index, roles).get(Role.SCRATCH)
    k = len(ranks)
    high = max(2, k, int(np.ceil(ranks.max())) if k else 2)
    bars = [g for g in groups if len(g) > 1]
    left = -(-k // 2)  # the better half is labelled on the left, the rest on the right
    rows = max(left, k - left)
    bar_y = [-0.25 - 0.18 * i for i in range(len(bars))]
    label_top = (bar_y[-1] if bars else -0.1) - 0.35
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * high + 3), 1.6 + 0.32 * rows + 0.18 * len(bars)))
    ax.hlines(0, 1, high, color="black", linewidth=1)
    for t in range(1, high + 1):
        ax.vlines(t, 0, 0.1, color="black", linewidth=1)
        ax.text(t, 0.15, str(t), ha="center", va="bottom", fontsize=8)
    for t in np.arange(1.5, high, 1.0):
        ax.vlines(t, 0, 0.05, color="black", linewidth=0.6)
    if np.isfinite(cd):
        ax.hlines(0.75, 1, 1 + cd, color="tab:red", linewidth=1.5)
        ax.vlines([1, 1 + cd], 0.68, 0.82, color="tab:red", linewidth=1.5)
        ax.text(1 + cd / 2, 0.88, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8, color="tab:red")
    for i, (name, r) in enumerate(ranks.items()):
        on_left = i < left
        y = label_top - 0.32 * (i if on_left else k - 1 - i)
        end = 1 - 0.25 if on_left else high + 0.25
        color = "black" if name == scratch else "tab:blue"
        ax.plot([r, r, end], [0, y, y], color=color, linewidth=0.9)
        ax.text(
            end + (-0.05 if on_left else 0.05),
            y,
            f"{name} ({r:.2f})" if on_left else f"({r:.2f}) {name}",
            ha="right" if on_left else "left",
            va="center",
            fontsize=8,
        )
    for y, g in zip(bar_y, bars, strict=True):
        members = ranks[[s for s in g if s in ranks.index]]
        ax.hlines(y, members.min() - 0.05, members.max() + 0.05, color="black", linewidth=4)
    ax.set_xlim(1 - 0.3, high + 0.3)
    ax.set_ylim(label_top - 0.32 * rows, 1.15)
    ax.axis("off")
    ax.set_title(f"{title}\nmean rank (1 = best, at the left); bars join strategies within the CD", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def score_scatter(points, score: str, outcome: str, taus, path: Path) -> Path:
    """Realised ``outcome`` (y) against the transferability ``score`` (x) for every backbone, one colour and
    marker per group, each point labelled with its backbone; the legend gives each group's Kendall and weighted tau,
    the title the pooled (within-group) ones, from ``taus`` (``stats.rank_correlations``)."""
    group = list(taus.columns[: list(taus.columns).index("score")])
    taus = taus[(taus.score == score) & (taus.outcome == outcome)]
    pooled = taus[(taus[group] == "all").all(axis=1)]
    per_group = {tuple(str(v) for v in r[group]): r for _, r in taus.drop(pooled.index).iterrows()}
    percent = bool(points[outcome].dropna().between(0, 1).all())
    markers = "osD^vP*Xh<>"
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (key, df) in enumerate(points.dropna(subset=[score, outcome]).groupby(group, sort=False)):
        key = key if isinstance(key, tuple) else (key,)
        name = " / ".join(str(v) for v in key)
        row = per_group.get(tuple(str(v) for v in key))
        if row is None:
            summary = f"n = {len(df)}"
        elif row.note == "":
            summary = f"τ = {row.tau:+.2f}, weighted τ = {row.weighted_tau:+.2f}, n = {int(row.n)}"
        else:
            summary = f"n = {int(row.n)}, no conclusion"
        y = 100 * df[outcome] if percent else df[outcome]
        ax.scatter(df[score], y, marker=markers[i % len(markers)], s=36, label=f"{name}: {summary}")
        if "backbone" in df:
            for xv, yv, b in zip(df[score], y, df.backbone, strict=True):
                ax.annotate(str(b), (xv, yv), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xlabel(f"{score} (higher = predicted better)")
    ax.set_ylabel(f"{outcome} (%)" if percent else outcome)
    if len(pooled) and pooled.note.iloc[0] == "":
        p = pooled.iloc[0]
        head = f"pooled within-group τ = {p.tau:+.2f} (p = {p.tau_p:.3g}), weighted τ = {p.weighted_tau:+.2f}"
        head += f" over {int(p.groups)} groups"
    else:
        head = "pooled: fewer than 3 backbones in every group, no conclusion"
    ax.set_title(f"{outcome} against {score}\n{head}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_vs_compute(spent, path: Path, roles: dict[Role, str] | None = None) -> Path:
    """Test accuracy against the wall seconds of a final run (log scale), one panel per dataset, a point per cell
    (its budget as the point's size), each strategy's cells of a backbone joined in budget order. The baselines and
    the panel's best other strategy (``emphasised``) are drawn strongly, the others faint."""
    # here, not at the top: a worker imports this module for its confusion matrices, not scipy's statistics
    from bench.analysis.stats import budget_order

    panels = list(spent.groupby("dataset", sort=False))
    roles = _roles(spent.strategy, roles)
    colours = strategy_colours(spent.strategy.unique(), roles)
    budgets = sorted(spent.budget.unique(), key=budget_order)
    sizes = {b: 18 + 26 * i for i, b in enumerate(budgets)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels) + 2.6, 3.9), squeeze=False)
    strong_anywhere: set[str] = set()
    for ax, (dataset, df) in zip(axes.flat, panels, strict=True):
        strong = emphasised(df, roles)
        strong_anywhere.update(strong)
        df = df.assign(order=df.budget.map(budget_order)).sort_values("order")
        for (strategy, _), s in df.groupby(["strategy", "backbone"], sort=True):
            bold = strategy in strong
            style = _strong(colours[strategy], strategy, roles) if bold else {"color": colours[strategy], **FAINT}
            ax.plot(s.seconds_per_run, 100 * s.acc_mean, zorder=3 if bold else 1, **(style | {"marker": None}))
            ax.scatter(
                s.seconds_per_run,
                100 * s.acc_mean,
                s=s.budget.map(sizes),
                color=colours[strategy],
                alpha=1.0 if bold else FAINT["alpha"],
                edgecolors="white" if bold else "none",
                zorder=4 if bold else 2,
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("seconds per final run (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(dataset + (f"\nbest other strategy: {strong[-1]}" if strong else ""), fontsize=10)
        ax.grid(alpha=0.3)
    sized = [(plt.scatter([], [], s=sizes[b], color="grey"), f"{b} per class") for b in budgets]
    note = "bold: the baselines and each panel's\nbest other strategy; faint: the others;\npoint size: the budget"
    _side_legend(fig, colours, strong_anywhere, roles, note, sized)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
