"""What a run leaves on disk so that the report needs nothing else: ``metrics.json`` and its history.

``metrics.json`` schema: status (completed | failed | interrupted | running), error, task, choices, overrides,
seed, metrics (final train/val/test values), params, wall_time_s, vanishing_ratio, history (per-epoch
curves), gradient_flow, best_checkpoint, run_dir.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

METRIC_PREFIXES = ("train/", "val/", "test/")


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


class HistoryRecorder(Callback):
    """Keeps per-epoch learning curves in memory, for ``metrics.json`` and the sweep report."""

    def __init__(self) -> None:
        self.history: dict[str, list] = {"epoch": [], "step": []}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = epoch_metrics(trainer.callback_metrics)
        n = len(self.history["epoch"])
        self.history["epoch"].append(trainer.current_epoch)
        self.history["step"].append(trainer.global_step)
        for key, value in row.items():
            self.history.setdefault(key, [None] * n).append(value)
        for values in self.history.values():
            if len(values) < n + 1:
                values.append(None)

    def run_summary(self) -> dict[str, Any]:
        return {"history": self.history}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict.get("history", self.history)
