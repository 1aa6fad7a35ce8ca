"""Writes the layer summary (shapes, parameters, FLOPs, strides, receptive fields) into every run dir.

A run dir should answer "what exactly was trained?" without re-composing its config: the summary
table goes to ``model_summary.txt`` / ``.md`` / ``.json`` and to TensorBoard's Text tab when training
starts. The headline numbers (FLOPs per sample, receptive field of the last feature map) also go to
``metrics.json`` so that the sweep report can put cost next to accuracy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from experiments.diagnostics.sinks import network_of, tensorboard_writer


def feature_receptive_field(rows: list[dict[str, Any]]) -> int | float | None:
    """Largest finite receptive field in the table: the last feature map's, before any global layer."""
    finite = [r["rf"] for r in rows if isinstance(r.get("rf"), (int, float)) and math.isfinite(r["rf"])]
    return max(finite) if finite else None


class ModelCard(Callback):
    """On train start: ``summarize(network, (1, C, H, W))`` written to ``<run_dir>/model_summary.{txt,md,json}``
    and logged as TensorBoard text ``model_summary``.

    Knobs: ``run_dir`` (default: the parent of the checkpoint directory), ``input_shape`` (C, H, W) (default:
    the shape of one training sample, read from the dataset without drawing a batch, so the run's random
    stream and batch order are the same with or without this callback).
    """

    def __init__(self, run_dir: str | None = None, input_shape: Sequence[int] | None = None) -> None:
        self.run_dir = run_dir
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.headline: dict[str, Any] = {}

    def _sample_shape(self, trainer: L.Trainer) -> tuple[int, ...] | None:
        if self.input_shape is not None:
            return self.input_shape
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is None or len(dataset) == 0:
            return None
        sample = dataset[0]
        x = sample[0] if isinstance(sample, (tuple, list)) else sample
        return tuple(x.shape)

    def _directory(self, trainer: L.Trainer) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        callback = trainer.checkpoint_callback
        if callback is not None and getattr(callback, "dirpath", None):
            return Path(callback.dirpath).parent
        return Path(trainer.default_root_dir)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from experiments.analysis.summary import summarize

        if not trainer.is_global_zero:
            return
        shape = self._sample_shape(trainer)
        if shape is None:
            return
        summary = summarize(network_of(pl_module), (1, *shape))
        table = summary.to_dict()
        directory = self._directory(trainer)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model_summary.txt").write_text(summary.to_text() + "\n")
        (directory / "model_summary.md").write_text(summary.to_markdown() + "\n")
        (directory / "model_summary.json").write_text(json.dumps(table, indent=2) + "\n")
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_text("model_summary", summary.to_markdown(), trainer.global_step)
        self.headline = {"flops": table["total_flops"], "receptive_field": feature_receptive_field(table["rows"])}

    def run_summary(self) -> dict[str, Any]:
        return dict(self.headline)
