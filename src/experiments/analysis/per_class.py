"""Per-class results of one run: which classes a network gets right, by name.

A headline accuracy hides the lesson a confusion matrix shows at a glance (sigmoid at chance may be one class
predicted everywhere; a shallow net may confuse only the star with the cross). One room for the concept, used by
three writers:

* the tasks (``tasks/classification.py``, ``tasks/segmentation.py``) turn their test-split metrics into the
  ``metrics.json`` fields :data:`PER_CLASS` (``{"test/acc": {"circle": 0.97, ...}}``), :data:`CONFUSION`
  (rows = true class, columns = predicted, counts) and :data:`CLASS_NAMES`, and draw :func:`confusion_figure`;
* ``evaluate`` names its prediction columns with :func:`run_class_names`, from the run's record, without the data;
* the report (:mod:`experiments.reporting.per_class`) gives each arm's mean per-class score over seeds and its
  per-class difference from the baseline arm, paired by seed like every other difference of the report.

Per-class accuracy is the recall of the class: the fraction of its test images predicted as it, i.e. the
confusion matrix's diagonal over its row sums (torchmetrics' ``MulticlassAccuracy(average=None)``). A class absent
from the test split has no accuracy (None), not 0.

Standard library only at import time (matplotlib is imported by :func:`confusion_figure` alone), so the report,
``evaluate --help`` and validation stay fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.run.layout import FIGURES

#: metrics.json keys (see :mod:`experiments.run.record`)
PER_CLASS, CONFUSION, CLASS_NAMES = "per_class", "confusion_matrix", "class_names"
#: the per-class score of each task, as a key of ``per_class``
CLASS_ACCURACY, CLASS_IOU = "test/acc", "test/iou"
#: the figure's file stem under ``<run dir>/figures/`` (evaluate appends its checkpoint/data label)
CONFUSION_FIGURE = "confusion_matrix"
#: above this many classes the figure's cells carry no count (they would be unreadable)
ANNOTATED_CLASSES = 30


# ---------------------------------------------------------------------------------------------- class names


def fallback_names(count: int) -> list[str]:
    """``class_0 ... class_<count-1>``: only when neither the data nor the run's record names its classes."""
    return [f"class_{i}" for i in range(count)]


def first_fitting(candidates: Iterable[Sequence[Any] | None], count: int) -> list[str]:
    """The first candidate list with exactly ``count`` names (as strings), else :func:`fallback_names`."""
    for names in candidates:
        if names is not None and not isinstance(names, str) and len(names) == count:
            return [str(name) for name in names]
    return fallback_names(count)


def data_class_names(datamodule: Any, count: int, background: bool = False) -> list[str]:
    """A data module's names for its ``count`` classes: its ``class_names`` (folder names, torchvision's
    ``classes``, mask_folder's names), else the procedural shapes' ``kinds`` (behind ``background`` for
    segmentation, whose class 0 is the background), else ``class_<i>``."""
    kinds = getattr(datamodule, "kinds", None)
    if kinds is not None and background:
        kinds = ["background", *kinds]
    return first_fitting([getattr(datamodule, "class_names", None), kinds], count)


def run_class_names(record: Mapping[str, Any] | None, data: Mapping[str, Any] | None, count: int) -> list[str]:
    """A finished run's class names without its data: what its ``metrics.json`` recorded, else what its data config
    says (``data.class_names``; the shapes' ``data.kinds``, behind the background for segmentation), else
    ``class_<i>``."""
    data = data or {}
    kinds = data.get("kinds")
    if kinds is not None and data.get("task") == "segmentation":
        kinds = ["background", *kinds]
    return first_fitting([(record or {}).get(CLASS_NAMES), data.get("class_names"), kinds], count)


# ------------------------------------------------------------------------------------------ one run's numbers


def recall_per_class(matrix: Sequence[Sequence[float]]) -> list[float | None]:
    """Each class's accuracy (recall): diagonal over row sum; None for a class with no test example."""
    return [row[k] / sum(row) if sum(row) else None for k, row in enumerate(matrix)]


def classification_summary(names: Sequence[str], matrix: Sequence[Sequence[int]]) -> dict[str, Any]:
    """The ``metrics.json`` fields of a classification run's test split: per-class accuracy, the confusion matrix
    (rows = true class) and the class names, in class-index order."""
    accuracy = recall_per_class(matrix)
    return {
        PER_CLASS: {CLASS_ACCURACY: dict(zip(names, accuracy, strict=True))},
        CONFUSION: [[int(count) for count in row] for row in matrix],
        CLASS_NAMES: list(names),
    }


def segmentation_summary(names: Sequence[str], iou: Sequence[float]) -> dict[str, Any]:
    """The ``metrics.json`` fields of a segmentation run's test split: each class's IoU and the class names."""
    values = [None if not math.isfinite(float(v)) else float(v) for v in iou]
    return {PER_CLASS: {CLASS_IOU: dict(zip(names, values, strict=True))}, CLASS_NAMES: list(names)}


def confusion_figure(names: Sequence[str], matrix: Sequence[Sequence[int]], title: str = "test split") -> Any:
    """A matplotlib ``Figure`` of the confusion matrix: colour = fraction of the true class (row-normalised, so a
    rare class reads as clearly as a common one), counts written in the cells, class names on both axes.

    Built on a bare ``Figure`` (no pyplot): no global backend or figure registry, safe in a training process."""
    from matplotlib.figure import Figure

    n = len(names)
    totals = [sum(row) for row in matrix]
    fractions = [[count / total if total else 0.0 for count in row] for row, total in zip(matrix, totals, strict=True)]
    side = min(max(4.0, 0.45 * n + 2.5), 16.0)
    # fixed margins sized to the longest name: a layout engine (constrained/tight) would double the drawing time,
    # paid by every classification run
    longest = max((len(str(name)) for name in names), default=1)
    figure = Figure(figsize=(side + 1.2, side), dpi=110)
    margin = min(0.12 + 0.013 * longest * 110 / (side * 100), 0.45)
    figure.subplots_adjust(left=margin, bottom=margin + 0.04 if n > 4 else 0.12, right=0.95, top=0.9)
    ax = figure.add_subplot()
    shown = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=list(names), rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels=list(names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    correct, total = sum(matrix[k][k] for k in range(n)), sum(totals)
    accuracy = f", accuracy {correct / total:.3f}" if total else ""
    ax.set_title(f"confusion matrix, {title} (n={total}{accuracy})")
    if n <= ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                colour = "white" if fractions[i][j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color=colour, fontsize="small")
    figure.colorbar(shown, ax=ax, label="fraction of the true class", shrink=0.8)
    return figure


def confusion_figure_path(run_dir: str | Path, label: str | None = None) -> Path:
    """``<run dir>/figures/confusion_matrix.png`` (training's test split), or ``confusion_matrix-<label>.png``
    (``evaluate``'s, named by checkpoint and data like its JSON)."""
    return Path(run_dir) / FIGURES / (f"{CONFUSION_FIGURE}-{label}.png" if label else f"{CONFUSION_FIGURE}.png")


def save_figure(figure: Any, path: str | Path) -> Path:
    """Write ``figure`` as a PNG (parent folders made), the format every figure of a run dir has."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
