"""Where diagnostics go: scalars to every logger, images/histograms/text to TensorBoard only.

Diagnostics write to the loggers directly (``logger.log_metrics(..., step)``) instead of through
``LightningModule.log``: they fire on their own interval, must not be throttled by
``log_every_n_steps``, and must not land in ``callback_metrics`` where checkpointing and the run
history look for train/val/test values. Rich media need TensorBoard's ``SummaryWriter``; with a
CSV logger (or none) they are skipped rather than failing the run.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn


def network_of(pl_module: L.LightningModule) -> nn.Module:
    """The wrapped network (``Task.network``) so layer names read ``encoder.stages.0...`` without a prefix."""
    network = getattr(pl_module, "network", None)
    return network if isinstance(network, nn.Module) else pl_module


def log_scalars(trainer: L.Trainer, values: dict[str, float], step: int) -> None:
    """Send scalars to every attached logger (TensorBoard, CSV, ...); loggers are rank-zero only."""
    if values:
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)


def tensorboard_writer(trainer: L.Trainer) -> Any | None:
    """The ``SummaryWriter`` of the first TensorBoard logger, or None (CSV logger, no logger, non-zero rank)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def histogram_sample(values: torch.Tensor, limit: int) -> np.ndarray:
    """At most ``limit`` evenly strided float32 values on the CPU: enough for a histogram's shape, and
    bounded so that a wide layer does not turn the logging step into a copy of the whole activation map."""
    flat = values.detach().reshape(-1)
    if flat.numel() > limit:
        flat = flat[:: -(-flat.numel() // limit)]
    return flat.float().cpu().numpy()


def render_figure(figure: Any) -> np.ndarray:
    """An HWC uint8 RGB array of a matplotlib ``Figure`` drawn on the Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
