"""Gradient flow: per-layer gradient norms in depth order, the vanishing ratio and its figure.

Glorot & Bengio (2010) diagnosed deep sigmoid nets by the gradient norm per layer: with the
"standard" initialisation it shrinks layer after layer towards the input, so the first layers
barely learn. ``vanishing_ratio`` = ||grad W_first|| / ||grad W_last|| condenses that plot into one
number (<< 1: vanishing, >> 1: exploding), and the measurement *at initialisation* (before the first
optimiser step) is what the sigmoid-vs-ReLU ablation compares, since training changes it.

The measurement runs in ``on_before_optimizer_step``: gradients are complete (accumulation done,
AMP unscaled) and not yet clipped, so the numbers show what the optimiser would get without clipping.
Every ``interval`` steps costs one norm per conv/linear layer and one host sync; other steps cost nothing.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.analysis.depth import CallOrder, weighted_layers
from experiments.diagnostics.sinks import (
    histogram_sample,
    log_histogram,
    log_image,
    log_scalars,
    network_of,
    render_figure,
    tensorboard_writer,
)


def gradient_norms(layers: list[nn.Module]) -> tuple[list[float], list[float]]:
    """(grad L2 norm, weight L2 norm) of each layer's ``weight``, with a single host sync.

    Only the weight is used (not the bias): biases start at zero, so a ratio to them is meaningless,
    and the weight is what carries the depth-wise scaling Glorot & Bengio analysed.
    """
    if not layers:
        return [], []
    grads = [m.weight.grad.detach().norm() for m in layers]
    weights = [m.weight.detach().norm() for m in layers]
    both = torch.stack(grads + weights).double().cpu().tolist()
    return both[: len(layers)], both[len(layers):]


def vanishing_ratio(grad_norms: list[float]) -> float | None:
    """First-layer over last-layer gradient norm; None when undefined (no layers, or a zero last gradient)."""
    if len(grad_norms) < 2 or not grad_norms[-1] or not all(map(math.isfinite, (grad_norms[0], grad_norms[-1]))):
        return None
    return grad_norms[0] / grad_norms[-1]


def gradient_flow_figure(measurements: list[dict[str, Any]]) -> Any:
    """Gradient norm vs depth on a log scale, one line per measurement (e.g. initialisation and now)."""
    from matplotlib.figure import Figure

    layers = measurements[-1]["layers"]
    fig = Figure(figsize=(max(6.0, 0.45 * len(layers) + 2), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for m in measurements:
        positive = [(i, g) for i, g in enumerate(m["grad_norm"]) if g and g > 0 and math.isfinite(g)]
        if positive:
            xs, ys = zip(*positive, strict=True)
            ax.plot(xs, ys, marker="o", linestyle="--" if m["step"] == 0 else "-", label=f"step {m['step']}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([short_name(name) for name in layers], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel("||grad W||_2")
    ratio = measurements[-1].get("vanishing_ratio")
    ax.set_title("Gradient flow" + (f"  (first/last = {ratio:.2e})" if ratio is not None else ""))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.9, bottom=0.36)  # fixed margins: tight_layout costs ~0.3 s
    return fig


def short_name(name: str, width: int = 28) -> str:
    """A layer name cut to ``width`` characters from the end (the informative part) for an axis label."""
    return name if len(name) <= width else "..." + name[-(width - 3):]


class GradientFlow(Callback):
    """Logs ``grad_norm/<layer>``, ``grad_ratio/<layer>`` (grad/weight norm) and ``diagnostics/vanishing_ratio``.

    Knobs:

    * ``interval`` – optimiser steps between measurements (step 0, before any update, is always measured);
    * ``histograms`` – also log ``hist_weight/<layer>`` and ``hist_grad/<layer>`` at each measurement;
    * ``max_histogram_values`` – values per histogram (strided subsample) to bound the logging cost;
    * ``figure_every_n_epochs`` – gradient-flow figure at the end of every n-th validation epoch (the latest
      measurement against the one at initialisation), when a measurement was taken since the last figure;
      0 = only at initialisation and at the end of training.

    ``run_summary()`` contributes the initialisation measurement to ``metrics.json``.
    """

    def __init__(
        self,
        interval: int = 50,
        histograms: bool = False,
        max_histogram_values: int = 4096,
        figure_every_n_epochs: int = 1,
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval
        self.histograms = histograms
        self.max_histogram_values = max_histogram_values
        self.figure_every_n_epochs = figure_every_n_epochs
        self.initial: dict[str, Any] | None = None
        self.latest: dict[str, Any] | None = None
        self._layers: dict[str, nn.Module] = {}
        self._order: CallOrder | None = None
        self._depth: list[str] | None = None
        self._shown: dict[str, Any] | None = None  # the measurement the last figure drew

    # -- set-up: which layers, in which order --------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._layers = weighted_layers(network_of(pl_module))
        self._order = CallOrder(self._layers)
        self._depth = None

    def _depth_order(self) -> list[str]:
        if self._depth is None:
            self._depth = self._order.finish() if self._order is not None else list(self._layers)
        return self._depth

    # -- measurement ------------------------------------------------------------------------------------

    def measure(self, step: int) -> dict[str, Any]:
        """Gradient and weight norms of every layer that has a gradient, in depth order."""
        names = [n for n in self._depth_order() if self._layers[n].weight.grad is not None]
        layers = [self._layers[n] for n in names]
        grad, weight = gradient_norms(layers)
        return {
            "step": step,
            "layers": names,
            "grad_norm": grad,
            "weight_norm": weight,
            "grad_weight_ratio": [g / w if w else None for g, w in zip(grad, weight, strict=True)],
            "vanishing_ratio": vanishing_ratio(grad),
        }

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = trainer.global_step
        self._depth_order()  # fixes the order and removes the one-shot hooks after the first forward pass
        first = self.initial is None
        if not (first or step % self.interval == 0) or not self._layers:
            return
        m = self.measure(step)
        self.latest = m
        scalars = {f"grad_norm/{n}": g for n, g in zip(m["layers"], m["grad_norm"], strict=True)}
        scalars.update(
            {f"grad_ratio/{n}": r for n, r in zip(m["layers"], m["grad_weight_ratio"], strict=True) if r is not None}
        )
        if m["vanishing_ratio"] is not None:
            scalars["diagnostics/vanishing_ratio"] = m["vanishing_ratio"]
        log_scalars(trainer, scalars, step)
        writer = tensorboard_writer(trainer)
        if writer is not None and self.histograms:
            limit = self.max_histogram_values
            for name in m["layers"]:
                weight = self._layers[name].weight
                log_histogram(writer, f"hist_weight/{name}", histogram_sample(weight, limit), step)
                log_histogram(writer, f"hist_grad/{name}", histogram_sample(weight.grad, limit), step)
        if first:
            self.initial = m
            self._figure(trainer, step)

    # -- figure -------------------------------------------------------------------------------------------

    def _figure(self, trainer: L.Trainer, step: int) -> None:
        """Draw the latest measurement (with the one at initialisation) unless the last figure drew it already."""
        if not trainer.is_global_zero or self.latest is None or self.latest is self._shown:
            return
        self._shown = self.latest
        shown = [self.latest] if self.initial is None or self.initial is self.latest else [self.initial, self.latest]
        log_image(trainer, "diagnostics/gradient_flow", render_figure(gradient_flow_figure(shown)), step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.figure_every_n_epochs
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking  # not trainer.validate(), not sanity
        if n and fitting and (trainer.current_epoch + 1) % n == 0:
            self._figure(trainer, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._figure(trainer, trainer.global_step)

    # -- outputs ------------------------------------------------------------------------------------------

    def run_summary(self) -> dict[str, Any]:
        """The measurement at initialisation, in the keys the sweep report reads."""
        if self.initial is None:
            return {}
        return {
            "vanishing_ratio": self.initial["vanishing_ratio"],
            "gradient_flow": {
                "step": self.initial["step"],
                "layers": self.initial["layers"],
                "grad_norm": self.initial["grad_norm"],
                "grad_weight_ratio": self.initial["grad_weight_ratio"],
            },
        }

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial = state_dict.get("initial", self.initial)
