"""PNG plots of an aggregated sweep.

This module imports matplotlib (with the non-interactive Agg backend, so it works on headless machines)
at import time; :mod:`experiments.report` imports it only when plots are requested, which keeps
``--help`` and ``--no-plots`` fast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.reporting.aggregate import (  # noqa: E402
    Group,
    Summary,
    is_bounded,
)
from experiments.reporting.curves import curve_metrics, curve_stats, gradient_flow_stats  # noqa: E402

#: Above this many groups the legend moves outside the axes so it does not hide the data.
_LEGEND_INSIDE_MAX = 8
#: Longer bar labels are tilted so that neighbours do not overlap.
_STRAIGHT_LABEL_MAX = 24
#: Layer names are used as x tick labels only for shallow, uniformly-shaped nets (readability).
_MAX_NAMED_LAYERS = 30


def metric_filename(prefix: str, metric: str) -> str:
    """``val/acc`` -> ``<prefix>_val_acc.png``: metric names contain slashes, file names must not."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', metric).strip('_')}.png"


def _colors(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _legend(ax, n: int) -> None:
    if n > _LEGEND_INSIDE_MAX:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif n > 0:
        ax.legend(fontsize="small")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(group: Group, summary: Summary) -> str:
    """Legend/tick label: the arm, its --best-of value when one was selected, and its seed count."""
    parts = []
    if summary.selection is not None and group.selected is not None:
        parts.append(f"{summary.selection.key}={group.selected}")
    parts.append(f"n={group.n}")
    return f"{group.label} ({', '.join(parts)})"


def plot_curves(summary: Summary, out_dir: Path) -> list[Path]:
    """One figure per history metric: per-group mean over seeds, shaded ±1 std band, x = epoch."""
    written: list[Path] = []
    groups = [g for g in summary.groups if g.n]
    colors = _colors(len(groups))
    for metric in curve_metrics(summary.runs):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        drawn = 0
        for group, color in zip(groups, colors, strict=True):
            curve = curve_stats(group.completed, metric)
            if curve is None:
                continue
            lower = [m - s for m, s in zip(curve.mean, curve.std, strict=True)]
            upper = [m + s for m, s in zip(curve.mean, curve.std, strict=True)]
            ax.plot(
                curve.x,
                curve.mean,
                color=color,
                marker="." if len(curve.x) < 30 else None,
                label=_label(group, summary),
            )
            ax.fill_between(curve.x, lower, upper, color=color, alpha=0.2, linewidth=0)
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        _legend(ax, drawn)
        written.append(_save(fig, out_dir / metric_filename("curves", metric)))
    return written


def _interval_label(rows: Sequence[tuple[Group, object]], metric: str) -> str:
    """``logit-t, n=3`` (or the several methods and seed counts of the arms): what the error bars are."""
    used: dict[str, set[int]] = {}
    for group, _ in rows:
        interval = group.intervals.get(metric)
        if interval is not None and interval.low is not None:
            used.setdefault(interval.method, set()).add(group.stats[metric].n)
    if not used:
        return "no interval (one run per arm)"
    return "; ".join(f"{method}, n={'/'.join(str(n) for n in sorted(ns))}" for method, ns in used.items())


def plot_bars(summary: Summary, out_dir: Path) -> list[Path]:
    """Bar per group for each headline metric, error bars = its 95 % interval over seeds (none for one run).

    A metric bounded to [0, 1] (accuracy, mIoU) gets its bounded interval and a 0–1 axis, so no bar reaches
    outside what the metric can be, and accuracy a dashed chance line at 1/num_classes when the runs record the
    class count.
    """
    written: list[Path] = []
    for metric in summary.bar_metrics:
        rows = [(g, g.stats[metric]) for g in summary.groups if g.stats[metric].mean is not None]
        if not rows:
            continue
        labels = [_label(g, summary) for g, _ in rows]
        fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(rows) + 2), 4.5))
        positions = list(range(len(rows)))
        means = [s.mean for _, s in rows]
        below, above = [], []
        for (group, _), mean in zip(rows, means, strict=True):
            interval = group.intervals.get(metric)
            if interval is None or interval.low is None or interval.high is None:
                below.append(0.0)
                above.append(0.0)
            else:
                below.append(max(mean - interval.low, 0.0))
                above.append(max(interval.high - mean, 0.0))
        ax.bar(positions, means, yerr=[below, above], capsize=4, color=_colors(len(rows)))
        if is_bounded(metric):
            ax.set_ylim(0.0, 1.0)
        chance = summary.chance(metric)
        if chance is not None:
            ax.axhline(chance, color="0.3", linestyle="--", linewidth=1, label=f"chance (1/{round(1 / chance)})")
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: bars fill the axes
        ax.set_xticks(positions)
        tilt = len(rows) > 2 or max(len(label) for label in labels) > _STRAIGHT_LABEL_MAX
        ax.set_xticklabels(labels, rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize="small")
        ax.set_ylabel(f"{metric} (mean, error bar: 95 % CI)")
        ax.set_title(f"final {metric}: mean over seeds, error bars 95 % CI ({_interval_label(rows, metric)})")
        ax.grid(axis="y", alpha=0.3)
        written.append(_save(fig, out_dir / metric_filename("bars", metric)))
    return written


def plot_gradient_flow(summary: Summary, out_dir: Path) -> list[Path]:
    """Gradient norm at initialisation vs depth on a log axis; vanishing gradients show as a slope."""
    groups = [g for g in summary.groups if g.n]
    profiles = [(g, stats) for g in groups if (stats := gradient_flow_stats(g.completed)) is not None]
    if not profiles:
        return []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (group, stats), color in zip(profiles, _colors(len(profiles)), strict=True):
        # On a log axis mean - std can go non-positive; clip the band to a sliver below the mean.
        lower = [max(m - s, m * 1e-3) for m, s in zip(stats.mean, stats.std, strict=True)]
        upper = [m + s for m, s in zip(stats.mean, stats.std, strict=True)]
        ax.plot(stats.depth, stats.mean, color=color, marker=".", label=_label(group, summary))
        ax.fill_between(stats.depth, lower, upper, color=color, alpha=0.2, linewidth=0)
    ax.set_yscale("log")
    layer_lists = {tuple(stats.layers) for _, stats in profiles}
    if len(layer_lists) == 1 and len(profiles[0][1].layers) <= _MAX_NAMED_LAYERS:
        stats = profiles[0][1]
        ax.set_xticks(stats.depth)
        ax.set_xticklabels(stats.layers, rotation=60, ha="right", fontsize="x-small")
        ax.set_xlabel("layer (input → output)")
    else:
        ax.set_xlabel("layer index (input → output)")
    ax.set_ylabel("gradient L2 norm at init")
    ax.set_title("gradient flow at initialisation")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, len(profiles))
    return [_save(fig, out_dir / "gradient_flow.png")]


def write_plots(summary: Summary, out_dir: Path) -> list[Path]:
    """All plots for the sweep; returns the files written (nothing for a sweep without data)."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    written += plot_curves(summary, out_dir)
    written += plot_bars(summary, out_dir)
    written += plot_gradient_flow(summary, out_dir)
    return written


__all__: Sequence[str] = ["metric_filename", "plot_bars", "plot_curves", "plot_gradient_flow", "write_plots"]
