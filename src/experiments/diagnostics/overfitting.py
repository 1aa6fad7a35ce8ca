"""Overfitting signal: the train-val gap of every metric both splits report, once per epoch.

The curves alone make the user eyeball two lines; the gap is the quantity that matters (it grows
while the model memorises the training set), so it gets its own tag. The sign is chosen so that a
positive gap always means "better on train than on val": ``val - train`` for losses and
``train - val`` for scores (accuracy, mIoU, ...).

**Like with like.** The ``train/<metric>`` Lightning logs is accumulated *during* the epoch, in train mode:
dropout drops units, batch norm normalises with the batch's statistics, the ``augment`` group has transformed
the images, and the weights change from batch to batch. A gap between that and the validation metric (eval
mode, clean images, the epoch's final weights) mixes the regularisers' training-time noise into the
generalisation gap: dropout and augmentation "narrow the gap" partly by lowering the train-mode number. So at
the end of every validation epoch the callback measures the training images once more exactly as validation
measures its own: eval mode, no augmentation, the current weights, the task's own metrics and loss. Those
``train_eval/<name>`` values are what ``gap/<name>`` compares with ``val/<name>``. ``train_images`` caps how many
training images (the first ones of the split, the same every epoch) are measured; 0 switches the measurement off
and the gap falls back to the train-mode values.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from experiments.diagnostics.sinks import log_scalars
from experiments.run.history import epoch_metrics

#: the most training images the eval-mode measurement takes by default
MAX_TRAIN_IMAGES = 2048
#: the train-side metrics measured in eval mode on the training images are logged under this prefix
EVAL_PREFIX = "train_eval/"


def train_val_gaps(metrics: dict[str, Any], train: dict[str, float] | None = None) -> dict[str, float]:
    """``gap/<name>`` for every ``name`` logged as both ``train/<name>`` and ``val/<name>`` (epoch values).

    ``train``: the train side measured in eval mode (``train_eval/<name>``, see the module doc) instead of the
    ``train/`` values in ``metrics``."""
    values = epoch_metrics(metrics)
    if train is not None:
        sides = {key.removeprefix(EVAL_PREFIX): value for key, value in train.items() if key.startswith(EVAL_PREFIX)}
    else:
        sides = {key.removeprefix("train/"): value for key, value in values.items() if key.startswith("train/")}
    gaps = {}
    for name, train_value in sides.items():
        val = values.get(f"val/{name}")
        if train_value is None or val is None:
            continue
        gaps[f"gap/{name}"] = val - train_value if "loss" in name else train_value - val
    return dict(sorted(gaps.items()))


def training_split(trainer: L.Trainer, name: str = "train") -> tuple[torch.Tensor, ...] | None:
    """A split's tensors as the data module holds them (images first, targets second), if it does."""
    data = getattr(trainer, "datamodule", None)
    splits = getattr(data, "served", None) or getattr(data, "splits", None) or {}
    split = splits.get(name) if isinstance(splits, dict) else None
    tensors = getattr(split, "tensors", None)
    return tuple(tensors) if tensors is not None and len(tensors) >= 2 else None


def supervised(pl_module: L.LightningModule) -> bool:
    """The task scores ``network(images)`` against the split's second tensor with its loss and ``val_metrics``, as
    the shared step of ``tasks/base.py`` does (classification, segmentation). A task with its own step (the
    autoencoder reconstructs its input) is not measured: its targets are not the split's second tensor. Read from
    the step's name, so the diagnostics need not import the tasks."""
    step = getattr(type(pl_module), "_step", None)
    return (getattr(step, "__qualname__", "") == "Task._step" and hasattr(pl_module, "val_metrics")
            and hasattr(pl_module, "loss_fn"))


@torch.no_grad()
def eval_mode_metrics(pl_module: L.LightningModule, images: torch.Tensor, targets: torch.Tensor,
                      batch_size: int) -> dict[str, float]:
    """The task's loss and metrics on ``images`` in eval mode (dropout off, batch norm on its running statistics),
    named ``train_eval/<name>``; the module's train/eval flags are restored afterwards."""
    was_training = pl_module.training
    pl_module.eval()
    try:
        metrics = pl_module.val_metrics.clone(prefix=EVAL_PREFIX)
        metrics.reset()
        device = pl_module.device
        total, count = 0.0, 0
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            y = targets[start:start + batch_size].to(device)
            logits = pl_module(x)
            total += float(pl_module.loss_fn(logits, y)) * len(x)
            count += len(x)
            metrics.update(logits, y)
        found = {key: float(value) for key, value in metrics.compute().items()}
        found[f"{EVAL_PREFIX}loss"] = total / max(count, 1)
        return found
    finally:
        pl_module.train(was_training)


class OverfittingGap(Callback):
    """Logs ``gap/loss``, ``gap/acc`` (or ``gap/miou`` ...) at the end of every epoch that validated, and the
    eval-mode training metrics they are computed from (``train_eval/...``).

    Epochs without validation (``check_val_every_n_epoch > 1``) are skipped rather than compared with a
    stale val value. ``run_summary()`` adds the per-epoch gaps and eval-mode train metrics to ``metrics.json``
    as ``overfitting``. ``train_images``: how many training images the eval-mode measurement uses (the split's
    first ones); default ``None``: as many as the validation split holds, at most :data:`MAX_TRAIN_IMAGES`, so
    the measurement costs no more than one validation pass and both sides of the gap carry the same sampling
    noise; 0: none, and the gaps use the train-mode epoch values as Lightning logged them.
    """

    def __init__(self, train_images: int | None = None) -> None:
        self.train_images = None if train_images is None else int(train_images)
        self.history: dict[str, list] = {"epoch": []}
        self._validated_epoch: int | None = None
        self._eval_train: dict[str, float] = {}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validated_epoch = trainer.current_epoch
        self._eval_train = {}
        count = self.train_images
        if count is None:
            val = training_split(trainer, "val")
            count = min(MAX_TRAIN_IMAGES, len(val[0])) if val is not None else MAX_TRAIN_IMAGES
        split = training_split(trainer) if count > 0 and supervised(pl_module) else None
        if split is not None:
            images, targets = split[0][:count], split[1][:count]
            batch = int(getattr(trainer.datamodule, "eval_batch_size", 256) or 256)
            self._eval_train = eval_mode_metrics(pl_module, images, targets, batch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validated_epoch != trainer.current_epoch:
            return
        measured = dict(self._eval_train)
        gaps = train_val_gaps(trainer.callback_metrics, measured or None)
        if not gaps:
            return
        log_scalars(trainer, {**measured, **gaps}, trainer.global_step)
        n = len(self.history["epoch"])
        self.history["epoch"].append(trainer.current_epoch)
        for key, value in {**measured, **gaps}.items():
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
