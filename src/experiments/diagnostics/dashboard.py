"""TensorBoard's CUSTOM SCALARS page laid out as an ablation's story: what was learned, then why.

Lightning gives one card per tag, so train and validation loss never share a chart and per-layer gradient norms
are one card per layer. A custom-scalars layout (written once per run with the logger's ``SummaryWriter``;
TensorBoard merges the layouts of all runs it shows, an identical chart counting once) puts them together::

    learning       loss: train vs val | <score>: train vs val | train-val gap | learning rate
    gradient flow  gradient norm per layer, input -> output (one line per layer) | vanishing ratio
    activations    dead units per layer | saturated units per layer

``<score>`` is the task's monitor (``val/acc``, ``val/miou``, ``val/psnr`` ...), so a new task gets its charts
unchanged. A chart appears only when something logs it (the overfitting, gradient, activation diagnostics, the
learning-rate monitor). The gradient chart lists the layers in depth order, known after the first forward pass,
so the layout is written once the first optimiser step has been measured (or when training ends).
"""

from __future__ import annotations

import re
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor

from experiments.diagnostics.activations import ActivationStats
from experiments.diagnostics.gradients import GradientFlow
from experiments.diagnostics.overfitting import OverfittingGap
from experiments.diagnostics.sinks import tensorboard_writer
from experiments.run.tensorboard import tensorboard_tag

#: chart -> ["Multiline", tag regexes], category -> charts: ``SummaryWriter.add_custom_scalars``'s layout
Layout = dict[str, dict[str, list[Any]]]


def exact(tag: str) -> str:
    """A custom-scalars regex (matched from the start of a tag) for exactly this tag, under its TensorBoard name."""
    return f"^{re.escape(tensorboard_tag(tag))}$"


def family(prefix: str) -> str:
    """A regex for every tag ``<prefix>/...`` under its TensorBoard name."""
    return f"^{re.escape(tensorboard_tag(prefix + '/'))}"


def dashboard_layout(monitor: str, gradient_layers: list[str] | None = None, gap: bool = False,
                     learning_rate: bool = False, activations: bool = False) -> Layout:
    """The layout for a task monitoring ``monitor`` (``val/acc``) and the diagnostics that are on."""
    score = monitor.split("/", 1)[-1]
    learning: dict[str, list[Any]] = {
        "loss: train vs val": ["Multiline", [r"^train/loss(_epoch)?$", exact("val/loss")]],
    }
    if score != "loss":
        learning[f"{score}: train vs val"] = ["Multiline", [rf"^train/{re.escape(score)}(_epoch)?$",
                                                             exact(f"val/{score}")]]
    if gap:
        learning["train-val gap (positive: better on train)"] = ["Multiline", [family("gap")]]
    if learning_rate:
        learning["learning rate"] = ["Multiline", [f"^{re.escape(tensorboard_tag('lr-'))}"]]
    layout: Layout = {"learning": learning}
    if gradient_layers:
        layout["gradient flow"] = {
            f"gradient norm per layer, input -> output ({len(gradient_layers)} layers)":
                ["Multiline", [exact(f"grad_norm/{layer}") for layer in gradient_layers]],
            "vanishing ratio (first / last layer gradient norm)":
                ["Multiline", [exact("diagnostics/vanishing_ratio")]],
        }
    if activations:
        layout["activations"] = {
            "dead units per layer (ReLU family)": ["Multiline", [family("act_dead")]],
            "saturated units per layer (sigmoid, tanh)": ["Multiline", [family("act_saturated")]],
        }
    return layout


class DashboardLayout(Callback):
    """Writes :func:`dashboard_layout` for this run to TensorBoard once per start (nothing without TensorBoard)."""

    def __init__(self) -> None:
        self._written = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._written = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._written and self._gradients_ready(trainer):
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._written:
            self.write(trainer, pl_module)

    @staticmethod
    def _gradients_ready(trainer: L.Trainer) -> bool:
        """Whether the gradient diagnostic (if on) has measured its layers in depth order."""
        return all(cb.initial is not None for cb in trainer.callbacks if isinstance(cb, GradientFlow))

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._written = True
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        callbacks = trainer.callbacks
        flow = next((cb for cb in callbacks if isinstance(cb, GradientFlow) and cb.initial is not None), None)
        writer.add_custom_scalars(dashboard_layout(
            monitor=str(getattr(pl_module, "monitor", "val/loss")),
            gradient_layers=list(flow.initial["layers"]) if flow is not None else None,
            gap=any(isinstance(cb, OverfittingGap) for cb in callbacks),
            learning_rate=any(isinstance(cb, LearningRateMonitor) for cb in callbacks),
            activations=any(isinstance(cb, ActivationStats) for cb in callbacks),
        ))
        writer.flush()
