"""Inside the network: convolution kernels as images, and each encoder stage's feature maps.

A learner's first question about a trained CNN is what it learned. Two pictures answer it:

* **kernels** — the first conv layer's weights drawn as a grid of small images, one tile per output channel. With
  three input channels a tile is an RGB image (its red, green and blue weights); with another count each input
  channel is its own grey tile, one row per output channel. The colour scale is symmetric around zero (one scale
  for the whole layer): mid-grey is a zero weight, brighter positive, darker negative, so an oriented edge
  detector reads as a light and a dark band side by side. Any other conv layer is drawn too when named
  (``layers: [encoder.stages.1.convs.0.0]``, the names of ``network.named_modules()``);
* **feature maps** — what each encoder stage outputs for the fixed validation images the dashboards use (the first
  ``images`` of the validation split, which the validation loader serves first, unshuffled, every epoch): one
  panel per stage, a row per image, its first ``channels`` channels as columns, each map scaled to the input's
  size with nearest-neighbour so the loss of resolution at every pooling step stays visible.

Both are drawn at initialisation (step 0) and at the end of every ``every_n_epochs``-th validation epoch, to every
image logger (TensorBoard's IMAGES tab) and as PNGs under ``<run dir>/figures/`` (``diagnostics/sinks.py``).

Which models: the first conv layer is the first ``nn.Conv2d`` in registration order (every model has one). Stages
are the shared :class:`~experiments.models.encoder.Encoder`'s pooling steps (``cnn``, ``fcn``, ``dilated``,
``autoencoder``) or, for ``resnet``, its three groups of blocks at 16/32/64 filters (He et al. 2016): see
:func:`stage_outputs`. A model with neither (a standard architecture of ``model=zoo``) gets its kernels drawn and
a one-line warning that it has no stages to show. A layer named in ``layers`` that is not a conv layer of the
model stops the run before its first step with one sentence naming the key and the model's conv layers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.diagnostics.sinks import log_image, network_of, render_figure
from experiments.errors import ConfigError
from experiments.models.encoder import Encoder

log = logging.getLogger(__name__)

#: the config key of this diagnostic's entry (conf/diagnostics/full.yaml), for its one-sentence errors
KEY = "diagnostics.features"
#: pixels per kernel weight in the grid, and the white line between tiles
KERNEL_SCALE, KERNEL_GAP = 8, 1
#: the grid stays below about this many pixels a side (a 64x64-channel layer shrinks its tiles to fit)
KERNEL_MAX_SIDE = 2048


# -- stages ------------------------------------------------------------------------------------------------

def has_stages(network: nn.Module) -> bool:
    """Whether :func:`stage_outputs` knows this network's stages."""
    return isinstance(getattr(network, "encoder", None), Encoder) or _is_resnet(network)


def _is_resnet(network: nn.Module) -> bool:
    from experiments.models.resnet import ResNet

    return isinstance(network, ResNet)


def stage_outputs(network: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Each stage's output for the batch ``x``, shallowest first.

    A stage is what the architecture calls one: the shared encoder's (conv -> norm -> act) x n -> pool
    (``Encoder.forward_stages``, after the pool), or a ResNet's group of blocks at one width (the output of the last
    block before the next stride-2 block). Raises ValueError for a network with neither (see :func:`has_stages`)."""
    encoder = getattr(network, "encoder", None)
    if isinstance(encoder, Encoder):
        return list(encoder.forward_stages(x).outputs)
    if _is_resnet(network):
        outputs: list[torch.Tensor] = []
        h = network.stem(x)
        for i, block in enumerate(network.blocks):
            if i and block.stride > 1:
                outputs.append(h)
            h = block(h)
        return [*outputs, h]
    raise ValueError(f"{type(network).__name__} has no encoder stages (an Encoder or a ResNet's block groups)")


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode with gradients off, every submodule's mode restored after: drawing must neither use
    batch statistics nor move BatchNorm's running ones (on_train_start runs in train mode)."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        for m, flag in flags:
            m.training = flag


def fixed_images(trainer: L.Trainer, split: str, count: int) -> torch.Tensor | None:
    """The first ``count`` inputs of a split, as its (unshuffled) loader serves them first: the validation split's
    are the fixed images the dashboards show every epoch. None without a data module."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None or count < 1:
        return None
    splits = getattr(datamodule, "splits", None)
    if splits is None or split not in splits:
        datamodule.setup()
        splits = getattr(datamodule, "splits", None)
    if splits is not None and split in splits:
        return splits[split].tensors[0][:count]
    batch = next(iter(getattr(datamodule, f"{split}_dataloader")()))
    return (batch[0] if isinstance(batch, (tuple, list)) else batch)[:count]


# -- kernels -----------------------------------------------------------------------------------------------

def first_conv(network: nn.Module) -> str | None:
    """The name of the first ``nn.Conv2d`` in registration order (the stem / ``encoder.stages.0.convs.0.0``)."""
    return next((name for name, m in network.named_modules() if isinstance(m, nn.Conv2d)), None)


def kernel_layout(weight: torch.Tensor) -> tuple[int, int, bool]:
    """(rows, columns, rgb) of the kernel grid of a conv ``weight`` (out, in, kh, kw): with 3 input channels one
    RGB tile per output channel in a near-square grid; with 1, one grey tile per output channel likewise; with any
    other count one row per output channel and one grey tile per input channel."""
    out_channels, in_channels = weight.shape[:2]
    if in_channels in (1, 3):
        columns = math.ceil(math.sqrt(out_channels))
        return math.ceil(out_channels / columns), columns, in_channels == 3
    return out_channels, in_channels, False


def kernel_grid(weight: torch.Tensor, scale: int = KERNEL_SCALE, gap: int = KERNEL_GAP) -> np.ndarray:
    """An HWC uint8 RGB image of a conv layer's kernels (see :func:`kernel_layout`), on one colour scale symmetric
    around zero for the whole layer: ``128 + 127 * w / max|w|``, so a zero weight is mid-grey whatever the layer's
    scale, and the sign of a weight is its brightness. Tiles are ``kh*scale x kw*scale`` pixels between white
    lines ``gap`` pixels wide; ``scale`` shrinks (to at least 1) for a layer too large for ~2048 pixels a side."""
    w = weight.detach().float().cpu()
    if w.dim() != 4:
        raise ValueError(f"a conv kernel is (out, in, kh, kw), got shape {tuple(w.shape)}")
    rows, columns, rgb = kernel_layout(w)
    kh, kw = w.shape[-2:]
    scale = max(1, min(scale, KERNEL_MAX_SIDE // max(1, max(rows * kh, columns * kw))))
    peak = float(w.abs().max())
    values = (128 + 127 * w / peak) if peak > 0 else torch.full_like(w, 128.0)
    values = values.round().clamp(0, 255).to(torch.uint8).numpy()
    th, tw = kh * scale, kw * scale
    image = np.full((rows * (th + gap) + gap, columns * (tw + gap) + gap, 3), 255, dtype=np.uint8)

    def place(row: int, column: int, tile: np.ndarray) -> None:  # tile: (kh, kw, 3)
        top, left = gap + row * (th + gap), gap + column * (tw + gap)
        image[top:top + th, left:left + tw] = tile.repeat(scale, axis=0).repeat(scale, axis=1)

    out_channels, in_channels = w.shape[:2]
    for o in range(out_channels):
        if in_channels in (1, 3):
            tile = values[o].transpose(1, 2, 0) if rgb else np.repeat(values[o, 0][..., None], 3, axis=2)
            place(o // columns, o % columns, tile)
        else:
            for i in range(in_channels):
                place(o, i, np.repeat(values[o, i][..., None], 3, axis=2))
    return image


# -- feature maps ------------------------------------------------------------------------------------------

def _to_unit(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Min-max to [0, 1] over ``dims`` (a constant map becomes 0)."""
    low = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - low
    return (x - low) / span.clamp_min(1e-12)


def feature_mosaic(maps: torch.Tensor, size: Sequence[int], channels: int) -> np.ndarray:
    """(rows = images, columns = the first ``channels`` channels) of a stage's maps (N, C, h, w), each scaled to
    ``size`` with nearest-neighbour and to [0, 1] per channel over all images (so images compare within a column)."""
    shown = maps[:, :channels].detach().float().cpu()
    shown = F.interpolate(shown, size=tuple(size), mode="nearest")
    shown = F.pad(_to_unit(shown, (0, 2, 3)), (0, 1, 0, 1), value=float("nan"))  # a blank line between maps
    n, c, h, w = shown.shape
    return shown.permute(0, 2, 1, 3).reshape(n * h, c * w).numpy()


def input_mosaic(images: torch.Tensor) -> np.ndarray:
    """The input images stacked vertically as RGB (grey repeated), each min-max scaled to [0, 1] on its own (the
    inputs are standardised)."""
    x = _to_unit(images.detach().float().cpu(), (1, 2, 3))
    if x.shape[1] != 3:
        x = x[:, :1].repeat(1, 3, 1, 1)
    n, _, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n * h, w, 3).numpy()


def feature_maps_figure(images: torch.Tensor, stages: list[torch.Tensor], channels: int, step: int) -> Any:
    """One panel for the inputs and one per stage: a row per image, a column per channel (see the module doc)."""
    from matplotlib.figure import Figure

    size = images.shape[-2:]
    panels = [("input", input_mosaic(images), None)]
    for s, maps in enumerate(stages, start=1):
        shown = min(channels, maps.shape[1])
        title = f"stage {s}: {maps.shape[1]} ch, {maps.shape[-2]}x{maps.shape[-1]} (first {shown} shown)"
        panels.append((title, feature_mosaic(maps, size, channels), "magma"))
    widths = [panel.shape[1] for _, panel, _ in panels]
    tall = panels[0][1].shape[0]  # the mosaics' common height in pixels
    fig = Figure(figsize=(min(24.0, max(6.0, 0.5 + 2.6 * sum(widths) / tall)), 3.4))
    axes = fig.subplots(1, len(panels), gridspec_kw={"width_ratios": widths})
    for ax, (title, panel, cmap) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(panel, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Feature maps per stage at step {step} (rows: fixed validation images)", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.99, top=0.8, bottom=0.03, wspace=0.08)
    return fig


# -- the callback ------------------------------------------------------------------------------------------

class FeatureMaps(Callback):
    """Kernels of the first conv layer (and of ``layers``) and each stage's feature maps, as images.

    Knobs (``conf/diagnostics/full.yaml``'s ``features`` entry):

    * ``every_n_epochs`` – draw at the end of every n-th validation epoch (>= 1); initialisation is always drawn;
    * ``layers`` – more conv layers whose kernels to draw, by ``named_modules()`` name;
    * ``images`` – the fixed validation images whose feature maps are drawn (0: kernels only);
    * ``channels`` – channels shown per stage (the first ones, the same every epoch).

    Images: ``diagnostics/kernels/<layer>``, ``diagnostics/kernel_change/<layer>`` (the kernels minus those at the
    first drawing, on their own symmetric scale: small 3×3 kernels move a fraction of their random start in a short
    run, so what training *added* — oriented brightness steps on the shapes — shows in the change before it shows in
    the kernels) and ``diagnostics/feature_maps``, PNGs under ``figures/``.
    """

    def __init__(self, every_n_epochs: int = 1, layers: Sequence[str] = (), images: int = 4,
                 channels: int = 8) -> None:
        # checked in setup(), where a ConfigError reaches the user as one sentence (Hydra's instantiate wraps errors)
        self.every_n_epochs = every_n_epochs
        self.layers = list(layers or [])
        self.images = images
        self.channels = channels
        self._kernels: dict[str, nn.Conv2d] = {}
        #: each layer's kernels when first drawn (initialisation, or a resumed run's restart)
        self._first: dict[str, torch.Tensor] = {}
        self._stages = False
        self._images: torch.Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check the knobs and that every named layer is a conv layer of this model, before the first step."""
        for knob, minimum in (("every_n_epochs", 1), ("images", 0), ("channels", 1)):
            value = getattr(self, knob)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{KEY}.{knob}", value, f"it must be a whole number >= {minimum}",
                                  f"use e.g. {KEY}.{knob}={max(minimum, 1)}")
        network = network_of(pl_module)
        convs = {name: m for name, m in network.named_modules() if isinstance(m, nn.Conv2d)}
        for name in self.layers:
            if name not in convs:
                some = ", ".join(list(convs)[:4]) or "none"
                raise ConfigError(f"{KEY}.layers", self.layers,
                                  f"{name!r} is not a conv layer of this {type(network).__name__} (its first conv "
                                  f"layers: {some})", f"name conv layers as in named_modules(), or {KEY}.layers=[]")
        first = first_conv(network)
        self._kernels = {name: convs[name] for name in dict.fromkeys([*([first] if first else []), *self.layers])}
        self._stages = has_stages(network)
        if not self._stages and self.images:
            log.warning("diagnostics: %s has no encoder stages; %s draws its kernels only", type(network).__name__,
                        KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:  # initialisation (not a resumed run's restart)
            self.draw(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking  # not trainer.validate(), not sanity
        if fitting and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.draw(trainer, pl_module)

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Kernels and feature maps at the current step, to every image logger and ``figures/``."""
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        for name, conv in self._kernels.items():
            log_image(trainer, f"diagnostics/kernels/{name}", kernel_grid(conv.weight), step)
            first = self._first.setdefault(name, conv.weight.detach().clone())
            change = conv.weight.detach() - first
            if change.abs().max() > 0:
                log_image(trainer, f"diagnostics/kernel_change/{name}", kernel_grid(change), step)
        if not (self._stages and self.images):
            return
        if self._images is None:
            self._images = fixed_images(trainer, "val", self.images)
            if self._images is None:
                return
        network = network_of(pl_module)
        x = self._images.to(pl_module.device)
        with evaluating(network):
            stages = stage_outputs(network, x)
        figure = feature_maps_figure(x, stages, self.channels, step)
        log_image(trainer, "diagnostics/feature_maps", render_figure(figure), step)
