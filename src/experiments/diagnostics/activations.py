"""Activation statistics through forward hooks: mean, std, dead units, saturated units, histograms.

The two failure modes the activation ablation is about become numbers here:

* **dead units** (ReLU family): a channel whose output is never positive for any sample or position
  of the batch passes no gradient through the non-linearity — "dying ReLU";
* **saturation** (sigmoid / tanh): values in the flat tails (sigmoid < 0.01 or > 0.99, tanh |a| > 0.98)
  have a near-zero derivative, which is how Glorot & Bengio (2010) explained the slow start of deep
  sigmoid nets (top layers saturating at 0).

Hooks exist only for the logging step: they are registered in ``on_train_batch_start`` of a step on
the interval and removed in ``on_train_batch_end``, so every other step runs the bare model.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.diagnostics.gradients import short_name
from experiments.diagnostics.sinks import (
    histogram_sample,
    log_histogram,
    log_image,
    log_scalars,
    network_of,
    render_figure,
    tensorboard_writer,
)
from experiments.layers.activation import Maxout

#: non-linearities whose "never positive" output means a unit is dead
RELU_FAMILY: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SELU, nn.SiLU,
    nn.CELU, nn.Mish, nn.Hardswish,  # a standard architecture's own (models/zoo.py with model.keep=[activation])
)
#: bounded non-linearities and the |output| band counted as saturated
SATURATING: dict[type[nn.Module], str] = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
ACTIVATIONS: tuple[type[nn.Module], ...] = (*RELU_FAMILY, *SATURATING, Maxout)


def activation_modules(network: nn.Module) -> dict[str, nn.Module]:
    """Activation modules by qualified name: those the network names (``activation_names``), else found by type.

    ``nn.Identity`` counts only when the network has no other activation (``activation=identity``):
    elsewhere Identity stands in for ``norm=none`` or ``pooling=none`` and is not a non-linearity. A standard
    architecture (models/zoo.py) names its swapped activations, so that its squeeze-and-excitation gates (a
    Sigmoid in EfficientNet) are not read as saturating activations.
    """
    declared = getattr(network, "activation_names", None)
    if declared:
        return {name: network.get_submodule(name) for name in declared}
    found = {name: m for name, m in network.named_modules() if isinstance(m, ACTIVATIONS)}
    if found:
        return found
    return {name: m for name, m in network.named_modules() if type(m) is nn.Identity}


def dead_fraction(a: torch.Tensor) -> torch.Tensor:
    """Fraction of units (channels for conv maps, features for linear layers) never positive over the batch."""
    positive = (a > 0).reshape(1, -1) if a.dim() < 2 else a > 0
    if positive.dim() > 2:
        positive = positive.flatten(2).any(dim=2)  # (N, C): did the channel fire anywhere in this sample
    return 1.0 - positive.any(dim=0).float().mean()


def saturated_fraction(a: torch.Tensor, kind: str) -> torch.Tensor:
    """Fraction of values in the flat tails: sigmoid < 0.01 or > 0.99; tanh |a| > 0.98."""
    if kind == "sigmoid":
        return ((a < 0.01) | (a > 0.99)).float().mean()
    return (a.abs() > 0.98).float().mean()


def activation_stats(module: nn.Module, output: torch.Tensor) -> dict[str, torch.Tensor]:
    """The statistics that apply to this kind of activation, as 0-d tensors (no host sync here)."""
    a = output.detach()
    af = a.float()
    std, mean = torch.std_mean(af) if af.numel() > 1 else (af.new_zeros(()), af.mean())
    stats = {"act_mean": mean, "act_std": std}
    if isinstance(module, RELU_FAMILY) and a.dim() >= 2:
        stats["act_dead"] = dead_fraction(a)
    kind = next((k for t, k in SATURATING.items() if isinstance(module, t)), None)
    if kind is not None:
        stats["act_saturated"] = saturated_fraction(af, kind)
    return stats


def activation_figure(table: dict[str, Any]) -> Any | None:
    """Dead and saturated fractions per activation layer (input -> output) as bars, from one measurement's table;
    None when the network's activations have neither (maxout, identity)."""
    from matplotlib.figure import Figure

    layers = table["layers"]
    labels = {"dead": "dead (never > 0 over the batch)", "saturated": "saturated (flat tails)"}
    series = [(label, [v or 0.0 for v in table[column]]) for column, label in labels.items()
              if any(v is not None for v in table[column])]
    if not layers or not series:
        return None
    fig = Figure(figsize=(max(5.0, 0.4 * len(layers) + 2), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar([x + offset for x in range(len(layers))], values, width=width, label=label)
    ax.set_ylim(0, 1)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([short_name(name) for name in layers], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("activation layer (input -> output)")
    ax.set_ylabel("fraction of units")
    ax.set_title(f"Activations at step {table['step']}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    fig.subplots_adjust(left=0.14, right=0.97, top=0.9, bottom=0.4)  # fixed margins: tight_layout costs ~0.3 s
    return fig


class ActivationStats(Callback):
    """Logs ``act_mean``, ``act_std``, ``act_dead``, ``act_saturated`` per activation layer (and ``hist_act``).

    Knobs:

    * ``interval`` – optimiser steps between measurements (step 0 included);
    * ``histograms`` – also log ``hist_act/<layer>`` (TensorBoard only);
    * ``max_histogram_values`` – values per histogram (strided subsample);
    * ``figure_every_n_epochs`` – image ``diagnostics/activations`` (dead / saturated fraction per layer, the
      latest measurement) at the end of every n-th validation epoch that follows a new measurement; 0 = none.

    ``run_summary()`` puts the first measurement (at initialisation) into ``metrics.json`` as
    ``activation_stats``.
    """

    def __init__(self, interval: int = 100, histograms: bool = False, max_histogram_values: int = 4096,
                 figure_every_n_epochs: int = 1) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval
        self.histograms = histograms
        self.max_histogram_values = max_histogram_values
        self.figure_every_n_epochs = figure_every_n_epochs
        self.initial: dict[str, Any] | None = None
        self.latest: dict[str, Any] | None = None
        self._shown: dict[str, Any] | None = None  # the measurement the last figure drew
        self._handles: list[Any] = []
        self._stats: dict[str, dict[str, torch.Tensor]] = {}
        self._samples: dict[str, Any] = {}
        self._calls: dict[str, int] = {}
        self._measured_step: int | None = None

    def _hook(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        calls = self._calls.get(name, 0)
        self._calls[name] = calls + 1
        key = name if calls == 0 else f"{name}@{calls}"  # a module called twice gets one row per call
        self._stats[key] = activation_stats(module, output)
        if self.histograms:
            self._samples[key] = histogram_sample(output, self.max_histogram_values)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.interval or step == self._measured_step:  # with accumulation: first micro-batch only
            return
        self._measured_step = step
        self._stats, self._samples, self._calls = {}, {}, {}
        self._handles = [
            module.register_forward_hook(partial(self._hook, name))
            for name, module in activation_modules(network_of(pl_module)).items()
        ]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._handles:
            return
        self._remove_hooks()
        step = self._measured_step or 0
        keys = [(layer, stat) for layer, stats in self._stats.items() for stat in stats]
        if not keys:
            return
        values = torch.stack([self._stats[layer][stat].float() for layer, stat in keys]).cpu().tolist()
        log_scalars(trainer, {f"{stat}/{layer}": v for (layer, stat), v in zip(keys, values, strict=True)}, step)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            for layer, sample in self._samples.items():
                log_histogram(writer, f"hist_act/{layer}", sample, step)
        self.latest = self._table(step, keys, values)
        if self.initial is None:
            self.initial = self.latest
        self._stats, self._samples = {}, {}

    def _table(self, step: int, keys: list[tuple[str, str]], values: list[float]) -> dict[str, Any]:
        by_layer: dict[str, dict[str, float]] = {}
        for (layer, stat), v in zip(keys, values, strict=True):
            by_layer.setdefault(layer, {})[stat] = v
        layers = list(by_layer)
        table: dict[str, Any] = {"step": step, "layers": layers}
        for stat, column in (("act_mean", "mean"), ("act_std", "std"), ("act_dead", "dead"),
                             ("act_saturated", "saturated")):
            table[column] = [by_layer[layer].get(stat) for layer in layers]
        return table

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.figure_every_n_epochs
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking  # not trainer.validate(), not sanity
        if n and fitting and (trainer.current_epoch + 1) % n == 0:
            self._figure(trainer)

    def _figure(self, trainer: L.Trainer) -> None:
        """The latest measurement as an image, unless the last figure drew it already (drawing is the costly part)."""
        if not trainer.is_global_zero or self.latest is None or self.latest is self._shown:
            return
        self._shown = self.latest
        figure = activation_figure(self.latest)
        if figure is not None:
            log_image(trainer, "diagnostics/activations", render_figure(figure), trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()
        if self.figure_every_n_epochs:
            self._figure(trainer)

    def run_summary(self) -> dict[str, Any]:
        return {"activation_stats": self.initial} if self.initial is not None else {}
