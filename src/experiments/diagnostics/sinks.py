"""Where diagnostics go: scalars to every logger; images to every logger that takes images and as PNGs in
the run dir; histograms and text to TensorBoard only.

Diagnostics write to the loggers directly (``logger.log_metrics(..., step)``) instead of through
``LightningModule.log``: they fire on their own interval, must not be throttled by
``log_every_n_steps``, and must not land in ``callback_metrics`` where checkpointing and the run
history look for train/val/test values. Rich media need TensorBoard's ``SummaryWriter``; with a
CSV logger (or none) they are skipped rather than failing the run. In TensorBoard every tag takes its
TensorBoard name (``run/tensorboard.py``: ``~grad_norm/...``, after the learning curves); other loggers keep
the plain one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from experiments.run.layout import RunDir
from experiments.run.tensorboard import tensorboard_tag


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


def log_histogram(writer: Any, tag: str, values: np.ndarray, step: int) -> None:
    """A histogram under its TensorBoard name (diagnostics sections after the learning curves, run/tensorboard.py)."""
    writer.add_histogram(tensorboard_tag(tag), values, step)


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


def _image_loggers(trainer: L.Trainer) -> list[Any]:
    return [logger for logger in trainer.loggers if hasattr(getattr(logger, "experiment", None), "add_image")
            or type(logger).__name__ == "MLFlowLogger"]


def log_image(trainer: L.Trainer, tag: str, image: np.ndarray, step: int) -> Path | None:
    """Send an HWC uint8 RGB image to every logger that takes images (TensorBoard's IMAGES tab, MLflow
    artifacts) and save it as ``<run dir>/figures/<tag>/step_<step>.png``; returns the PNG's path (rank zero only).

    The PNG copy means a figure outlives the logger choice: ``logger=csv`` runs and the report still have it."""
    if not trainer.is_global_zero:
        return None
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    for logger in _image_loggers(trainer):
        experiment = logger.experiment
        if hasattr(experiment, "add_image"):
            experiment.add_image(tensorboard_tag(tag), image, step, dataformats="HWC")
        else:  # MLflow: one artifact per step
            experiment.log_image(logger.run_id, image, artifact_file=f"figures/{tag}/step_{step:06d}.png")
    from PIL import Image

    path = RunDir(trainer.default_root_dir).figure(tag, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
