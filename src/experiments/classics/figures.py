"""The page's own drawings, for the views no framework plot gives: a quantity per layer over training steps (from
TensorBoard scalars a diagnostic logged), accuracy against an image shift (from the shifted evaluation), the
eval-mode train − val accuracy gap per epoch (from the overfitting diagnostic), and segmentation predictions of
several runs side by side. Everything else on the page is a figure the framework drew itself (report,
diagnostics, inspect).

Every figure has a title, axis labels and a key; an accuracy axis runs over [0, 1] with chance marked, so two
figures are read on the same scale and a net at chance looks like one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.ticker import MaxNLocator  # noqa: E402

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


def accuracy_axis(ax, chance: float | None, label: str = "accuracy") -> None:
    """An accuracy axis: [0, 1], labelled, with chance as a dashed line (and in the key) when known."""
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel(label)
    if chance is not None:
        ax.axhline(chance, color="0.4", linestyle="--", linewidth=1.0, label=f"chance ({chance:.2f})")


def _bounds(point) -> tuple[float, float]:
    low = getattr(point, "low", None) if hasattr(point, "low") else getattr(point, "ci_low", None)
    high = getattr(point, "high", None) if hasattr(point, "high") else getattr(point, "ci_high", None)
    return (point.mean if low is None else low), (point.mean if high is None else high)


def shift_accuracy(curves: dict[str, list[tuple[int, Stat | evidence.Shown]]], path: Path, ylabel: str, title: str,
                   chance: float | None = None) -> Path | None:
    """One line per arm: accuracy on test images shifted by k pixels, with its 95 % interval over seeds."""
    drawn = {k: [(s, st) for s, st in v if st.mean is not None] for k, v in curves.items()}
    drawn = {k: v for k, v in drawn.items() if v}
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for label, points in drawn.items():
        shifts = [s for s, _ in points]
        means = [st.mean for _, st in points]
        bands = [_bounds(st) for _, st in points]
        line, = ax.plot(shifts, means, marker="o", label=label)
        ax.fill_between(shifts, [b[0] for b in bands], [b[1] for b in bands], alpha=0.15, linewidth=0,
                        color=line.get_color())
    ax.set_xlabel("shift of the test images (pixels)")
    accuracy_axis(ax, chance, ylabel)
    ax.set_title(title, fontsize="medium")
    ax.set_xticks(sorted({s for v in drawn.values() for s, _ in v}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", title="pooling", title_fontsize="small")
    return _save(fig, path)


def gap_curves(curves: dict[str, dict[int, list[float]]], path: Path, title: str) -> Path | None:
    """One line per arm: the train − val accuracy gap per epoch (mean over seeds, band: min to max over seeds).

    ``curves``: arm -> epoch -> the seeds' gaps. The axis spans [−0.2, 1] (a gap of accuracies lies in [−1, 1];
    below −0.2 never happens to a net that fits its training set) with 0, no overfitting, drawn solid."""
    drawn = {label: sorted(points.items()) for label, points in curves.items() if points}
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    low_end = -0.2
    for label, points in drawn.items():
        epochs = [e + 1 for e, _ in points]
        means = [sum(v) / len(v) for _, v in points]
        line, = ax.plot(epochs, means, marker=".", label=label)
        ax.fill_between(epochs, [min(v) for _, v in points], [max(v) for _, v in points], alpha=0.12, linewidth=0,
                        color=line.get_color())
        low_end = min(low_end, min(min(v) for _, v in points) - 0.05)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_ylim(max(-1.0, low_end), 1.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("train − val accuracy (train set in eval mode)")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", title="arm", title_fontsize="x-small")
    return _save(fig, path)


def segmentation_grid(images, truth, predictions: dict[str, object], class_names: Sequence[str], path: Path,
                      title: str) -> Path | None:
    """Rows: test images; columns: the input, the ground truth, then each method's prediction, titled; one colour
    key for the classes (the palette every segmentation figure of the framework uses)."""
    from matplotlib.patches import Patch

    from experiments.data.palette import palette

    if images is None or not len(images) or not predictions:
        return None
    colours = palette(max(len(class_names), 1)).float().numpy() / 255.0
    columns = ["input", "ground truth", *predictions]
    rows = len(images)
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.45 * len(columns), 1.45 * rows + 0.9), squeeze=False)
    for r in range(rows):
        picture = images[r].detach().float()
        picture = (picture - picture.min()) / max(float(picture.max() - picture.min()), 1e-8)
        shown = [picture.permute(1, 2, 0).squeeze(-1).numpy(), colours[truth[r].long().numpy()],
                 *(colours[mask[r].long().numpy()] for mask in predictions.values())]
        for c, panel in enumerate(shown):
            ax = axes[r][c]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize="small")
    handles = [Patch(facecolor=colours[k], edgecolor="0.5", label=name) for k, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize="x-small", frameon=False,
               title="classes", title_fontsize="x-small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return _save(fig, path)
