"""A run's learning curves and final values as ``metrics.json`` keeps them (its ``metrics`` and ``history`` fields:
see :mod:`experiments.run.schema`, the one description of the file).

Lightning's metric dict holds ``_step``/``_epoch`` variants and tensors; the record keeps epoch-level floats named
``<split>/<name>``, with None where a value is not finite (JSON has no NaN).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from experiments.run.schema import METRIC_PREFIXES


def _scalar(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def epoch_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Epoch-level train/val/test values from Lightning's metric dict (the ``_step`` variants dropped)."""
    out = {}
    for key, value in metrics.items():
        if key.startswith(METRIC_PREFIXES) and not key.endswith("_step"):
            out[key.removesuffix("_epoch")] = _scalar(value)
    return dict(sorted(out.items()))


def append_row(history: dict[str, list], row: dict[str, Any]) -> None:
    """Append one epoch's ``row`` to column-wise ``history`` (one list per key, all the same length): a key first seen
    now gets None for the earlier epochs, and a key missing from this row gets None for this one."""
    n = len(next(iter(history.values()), []))
    for key, value in row.items():
        history.setdefault(key, [None] * n).append(value)
    for values in history.values():
        if len(values) < n + 1:
            values.append(None)


class HistoryRecorder(Callback):
    """Keeps per-epoch learning curves in memory, for ``metrics.json`` and the sweep report."""

    def __init__(self) -> None:
        self.history: dict[str, list] = {"epoch": [], "step": []}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        append_row(self.history, {"epoch": trainer.current_epoch, "step": trainer.global_step,
                                  **epoch_metrics(trainer.callback_metrics)})

    def run_summary(self) -> dict[str, Any]:
        return {"history": self.history}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict.get("history", self.history)
