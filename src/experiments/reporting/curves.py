"""Learning curves and gradient flow over a group's seeds, from the runs' histories and records (the report's plots).

Kept apart from :mod:`experiments.reporting.aggregate`, which summarises final metrics: these read per-epoch and
per-layer series, for figures only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.reporting.runs import RunResult
from experiments.reporting.stats import mean_std

#: History keys that are the x-axis, not curves.
HISTORY_AXES = ("epoch", "step")


@dataclass(frozen=True)
class Curve:
    """Mean and std of one history metric over a group's seeds, per epoch."""

    x: list[float]
    mean: list[float]
    std: list[float]


def curve_metrics(runs: Sequence[RunResult]) -> list[str]:
    """History keys worth a learning-curve plot: validation metrics and every loss."""
    keys = {key for run in runs if run.completed for key in run.history}
    chosen = {k for k in keys if k not in HISTORY_AXES and (k.startswith("val/") or "loss" in k)}
    return sorted(chosen, key=lambda k: (not k.startswith("val/"), k))


def curve_stats(runs: Sequence[RunResult], metric: str) -> Curve | None:
    """Average a history metric across runs, aligned on epoch (seeds may stop at different epochs).

    Missing (null) and non-finite points are skipped, so runs logging validation only every few epochs
    still contribute.  Falls back to the list index when a run has no usable ``epoch`` list.
    """
    by_x: dict[float, list[float]] = {}
    for run in runs:
        values = run.history.get(metric)
        if not values:
            continue
        epochs = run.history.get("epoch")
        if not epochs or len(epochs) != len(values):
            epochs = [float(i) for i in range(len(values))]
        for x, y in zip(epochs, values, strict=True):
            if x is None or y is None or not math.isfinite(y):
                continue
            by_x.setdefault(float(x), []).append(y)
    if not by_x:
        return None
    xs = sorted(by_x)
    stats = [mean_std(by_x[x]) for x in xs]
    return Curve(x=xs, mean=[s.mean or 0.0 for s in stats], std=[s.std or 0.0 for s in stats])


@dataclass(frozen=True)
class FlowStats:
    """Per-layer gradient norm at init, mean/std over a group's seeds (positive values only)."""

    layers: list[str]
    depth: list[int]
    mean: list[float]
    std: list[float]


def gradient_flow_stats(runs: Sequence[RunResult]) -> FlowStats | None:
    """Average gradient-flow profiles by layer position; non-positive norms cannot be drawn on log-y."""
    flows = [run.gradient_flow for run in runs if run.completed and run.gradient_flow is not None]
    if not flows:
        return None
    length = max(len(flow.grad_norm) for flow in flows)
    names = next((flow.layers for flow in flows if len(flow.layers) == length), [])
    depth, means, stds, layers = [], [], [], []
    for i in range(length):
        values = [v for flow in flows if i < len(flow.grad_norm) and (v := flow.grad_norm[i]) is not None and v > 0]
        stat = mean_std(v for v in values if math.isfinite(v))
        if stat.mean is None:
            continue
        depth.append(i)
        means.append(stat.mean)
        stds.append(stat.std or 0.0)
        layers.append(names[i] if i < len(names) else str(i))
    if not depth:
        return None
    return FlowStats(layers=layers, depth=depth, mean=means, std=stds)
