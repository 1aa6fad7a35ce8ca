"""The page's own drawings, for the two views no framework plot gives: a quantity per layer over training
steps (from TensorBoard scalars a diagnostic logged) and accuracy against an image shift (from the shifted
evaluation). Everything else on the page is a figure the framework drew itself (report, diagnostics, inspect).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from experiments.classics import evidence  # noqa: E402
from experiments.reporting import RunResult, Stat  # noqa: E402
from experiments.run.layout import RunDir  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def activation_means(runs: Sequence[RunResult], path: Path, title: str) -> Path | None:
    """``act_mean/<layer>`` of every activation layer of the first run against the training step."""
    if not runs:
        return None
    run = runs[0]
    layers = ((RunDir(run.path).read_record() or {}).get("activation_stats") or {}).get("layers") or []
    series = evidence.scalars(run.path, [f"act_mean/{layer}" for layer in layers])
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, layer in enumerate(layers):
        points = series.get(f"act_mean/{layer}")
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, color=cmap(i / max(1, len(layers) - 1)), label=layer.removeprefix("encoder."))
    ax.set_xlabel("training step")
    ax.set_ylabel("mean activation")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2, title="layer (input → output: dark → light)", title_fontsize="x-small")
    return _save(fig, path)


def shift_accuracy(curves: dict[str, list[tuple[int, Stat]]], path: Path, ylabel: str, title: str) -> Path | None:
    """One line per arm: accuracy on test images shifted by k pixels, with its 95 % interval over seeds."""
    drawn = {k: [(s, st) for s, st in v if st.mean is not None] for k, v in curves.items()}
    drawn = {k: v for k, v in drawn.items() if v}
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for label, points in drawn.items():
        shifts = [s for s, _ in points]
        means = [st.mean for _, st in points]
        low = [st.ci_low if st.ci_low is not None else st.mean for _, st in points]
        high = [st.ci_high if st.ci_high is not None else st.mean for _, st in points]
        ax.plot(shifts, means, marker="o", label=label)
        ax.fill_between(shifts, low, high, alpha=0.15, linewidth=0)
    ax.set_xlabel("shift of the test images (pixels)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.set_xticks(sorted({s for v in drawn.values() for s, _ in v}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)
