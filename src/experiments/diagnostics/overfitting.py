"""Overfitting signal: the train-val gap of every metric both splits report, once per epoch.

The curves alone make the user eyeball two lines; the gap is the quantity that matters (it grows
while the model memorises the training set), so it gets its own tag. The sign is chosen so that a
positive gap always means "better on train than on val": ``val - train`` for losses and
``train - val`` for scores (accuracy, mIoU, ...).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from experiments.diagnostics.sinks import log_scalars
from experiments.run.history import epoch_metrics


def train_val_gaps(metrics: dict[str, Any]) -> dict[str, float]:
    """``gap/<name>`` for every ``name`` logged as both ``train/<name>`` and ``val/<name>`` (epoch values)."""
    values = epoch_metrics(metrics)
    gaps = {}
    for key, train in values.items():
        if not key.startswith("train/"):
            continue
        name = key.removeprefix("train/")
        val = values.get(f"val/{name}")
        if train is None or val is None:
            continue
        gaps[f"gap/{name}"] = val - train if "loss" in name else train - val
    return dict(sorted(gaps.items()))


class OverfittingGap(Callback):
    """Logs ``gap/loss``, ``gap/acc`` (or ``gap/miou`` ...) at the end of every epoch that validated.

    Epochs without validation (``check_val_every_n_epoch > 1``) are skipped rather than compared with a
    stale val value. ``run_summary()`` adds the per-epoch gaps to ``metrics.json`` as ``overfitting``.
    """

    def __init__(self) -> None:
        self.history: dict[str, list] = {"epoch": []}
        self._validated_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validated_epoch != trainer.current_epoch:
            return
        gaps = train_val_gaps(trainer.callback_metrics)
        if not gaps:
            return
        log_scalars(trainer, gaps, trainer.global_step)
        n = len(self.history["epoch"])
        self.history["epoch"].append(trainer.current_epoch)
        for key, value in gaps.items():
            self.history.setdefault(key, [None] * n).append(value)
        for values in self.history.values():
            if len(values) < n + 1:
                values.append(None)

    def run_summary(self) -> dict[str, Any]:
        return {"overfitting": self.history} if self.history["epoch"] else {}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict.get("history", self.history)
