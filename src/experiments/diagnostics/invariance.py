"""Pooling's invariance, measured inside the network: how much each stage's feature maps change when the input
image moves by k pixels.

The measure (per stage s, per image x, averaged over the four directions d of a k-pixel shift)::

    diff_s(x) = mean_d ||f_s(x) - f_s(shift_d(x))|| / ||f_s(x)||

with ``f_s`` the stage's output (C x h x w, after its pooling step; see ``features.stage_outputs``) and ``||.||``
the L2 norm over all of it; then the mean over images (an image whose reference map is all zero at a stage has no
relative change there and is left out of that stage's mean). ``test/shift_diff_stage<s>`` is that mean.

* **Same positions, not after global pooling.** Zhang (ICML 2019) calls a representation shift-*invariant* when
  ``F(shift(X)) = F(X)``: the same numbers at the same places. Comparing the maps position by position measures
  exactly that, and separates it from *equivariance* (``F(shift(X)) = shift(F(X))``), which a conv layer has
  anyway: without pooling a stage's map moves with the image and the difference stays large at every depth,
  while a pooling step of factor 2 lets a pattern move inside its window without changing the output. Globally
  average pooling first would call every equivariant map invariant (a sum over positions ignores where things
  are), hiding the very difference between ``pooling=none`` and the pooled arms.
* **Circular shift** (``torch.roll``), as the shifted test of ``classics/shift.py``: no content leaves the image
  and no padded border enters it, so both inputs hold the same pixels and the difference is due to *where* they
  are; the procedural images have a noise background up to the border, so the wrap adds no artificial edge.
  With zero padding instead a stage would also change because k columns of content were replaced by zeros.
* **Not bounded to [0, 1]:** it is 0 for an invariant stage, about sqrt(2) for a non-negative (post-ReLU) map
  that moved onto positions uncorrelated with it, and unbounded above in general (a map whose norm grows under
  the shift), so the report gives it a Student-t interval over seeds, not the bounded one of accuracies.

The test-end callback :class:`ShiftInvariance` (turned on by ``experiment=pooling``) logs the numbers beside the
test accuracy, so the sweep report shows them with intervals over seeds, and draws one image's maps and shifted
maps side by side (``diagnostics/shift_invariance``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.diagnostics.features import evaluating, fixed_images, has_stages, stage_outputs
from experiments.diagnostics.sinks import log_image, network_of, render_figure
from experiments.errors import ConfigError

log = logging.getLogger(__name__)

KEY = "diagnostics.invariance"
#: right, left, down, up (as classics/shift.py)
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))
#: the metric name of stage s (1-based)
METRIC = "test/shift_diff_stage{}"
TAG = "diagnostics/shift_invariance"


def shift_image(x: torch.Tensor, shift: int, direction: tuple[int, int]) -> torch.Tensor:
    """``x`` (..., H, W) moved circularly by ``shift`` pixels in ``direction`` (dy, dx)."""
    dy, dx = direction
    return torch.roll(x, shifts=(dy * shift, dx * shift), dims=(-2, -1))


def relative_difference(reference: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """Per image: ||reference - moved|| / ||reference|| over (C, H, W); NaN where the reference is all zero."""
    ref, mov = reference.flatten(1).double(), moved.flatten(1).double()
    norm = ref.norm(dim=1)
    diff = (ref - mov).norm(dim=1)
    return torch.where(norm > 0, diff / norm.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)


@torch.no_grad()
def per_image_differences(network: nn.Module, images: torch.Tensor, shift: int,
                          directions: Sequence[tuple[int, int]] = DIRECTIONS, batch: int = 256) -> torch.Tensor:
    """(stages, images) float64: each image's relative change per stage, averaged over ``directions`` (only the
    identity when ``shift`` is 0). The network is evaluated as it is (put it in eval mode first)."""
    moves = list(directions) if shift else [(0, 0)]
    chunks = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        reference = stage_outputs(network, x)
        total = torch.zeros(len(reference), len(x), dtype=torch.float64, device=x.device)
        for direction in moves:
            moved = stage_outputs(network, shift_image(x, shift, direction))
            total += torch.stack([relative_difference(r, m) for r, m in zip(reference, moved, strict=True)])
        chunks.append(total / len(moves))
    return torch.cat(chunks, dim=1)


def stage_differences(network: nn.Module, images: torch.Tensor, shift: int,
                      directions: Sequence[tuple[int, int]] = DIRECTIONS) -> list[float]:
    """The mean over images of :func:`per_image_differences` per stage (images with an all-zero map left out; NaN
    when every image's is)."""
    per_image = per_image_differences(network, images, shift, directions)
    return [float(row.nanmean()) if bool((~row.isnan()).any()) else float("nan") for row in per_image.cpu()]


# -- the figure --------------------------------------------------------------------------------------------

def _channel_mean(x: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    return F.interpolate(x.float().mean(dim=1, keepdim=True), size=tuple(size), mode="nearest")[0, 0].cpu().numpy()


def invariance_figure(network: nn.Module, image: torch.Tensor, shift: int, means: Sequence[float],
                      title: str = "") -> Any:
    """One image and its copy moved ``shift`` pixels right: a row for the input and one per stage with the
    channel-mean of f(x), of f(shift(x)) (one colour scale per row) and the per-position norm of their
    difference, titled with this image's relative difference and the mean over images (``means``)."""
    from matplotlib.figure import Figure

    x = image[None]
    moved = shift_image(x, shift, (0, 1))
    with torch.no_grad():
        ref, mov = stage_outputs(network, x), stage_outputs(network, moved)
    size = x.shape[-2:]
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = [(
        "input", _channel_mean(x, size), _channel_mean(moved, size),
        F.interpolate((x - moved).norm(dim=1, keepdim=True), size=tuple(size))[0, 0].cpu().numpy())]
    for s, (r, m) in enumerate(zip(ref, mov, strict=True), start=1):
        own = float(relative_difference(r, m)[0])
        diff = F.interpolate((r - m).float().norm(dim=1, keepdim=True), size=tuple(size), mode="nearest")
        label = f"stage {s} ({r.shape[-2]}x{r.shape[-1]}): this image {own:.3f}, mean {means[s - 1]:.3f}"
        rows.append((label, _channel_mean(r, size), _channel_mean(m, size), diff[0, 0].cpu().numpy()))
    fig = Figure(figsize=(6.6, 1.9 * len(rows) + 0.5))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    heads = ("f(x)", f"f(x shifted {shift} px right)", "|f(x) - f(shift(x))|")
    for i, (label, a, b, d) in enumerate(rows):
        low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        for j, (panel, cmap, limits) in enumerate(((a, "magma", (low, high)), (b, "magma", (low, high)),
                                                   (d, "viridis", (0.0, float(d.max()) or 1.0)))):
            ax = axes[i, j]
            ax.imshow(panel, cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j], fontsize=8)
        axes[i, 0].set_ylabel(label.split(":")[0], fontsize=7)
        if i:
            axes[i, 1].set_xlabel(label.split(": ", 1)[1], fontsize=7)
    fig.suptitle(title or f"Stage outputs under a {shift}-pixel circular shift (channel mean)", fontsize=9)
    fig.subplots_adjust(left=0.1, right=0.98, top=1 - 0.75 / (1.9 * len(rows) + 0.5), bottom=0.03, hspace=0.35,
                        wspace=0.05)
    return fig


# -- the callback ------------------------------------------------------------------------------------------

class ShiftInvariance(Callback):
    """At the end of each test: ``test/shift_diff_stage1..N`` for the first ``images`` test images shifted by
    ``shift`` pixels, and the figure of the first of them (``diagnostics/shift_invariance``, PNG under figures/).

    The tested network is measured (``train`` tests the best checkpoint's weights), in eval mode, so the numbers
    belong to the accuracy beside them. A model without stages (``features.has_stages``) is skipped with a warning.
    """

    def __init__(self, shift: int = 1, images: int = 256, figure: bool = True) -> None:
        self.shift = shift
        self.images = images
        self.figure = figure
        self.result: list[float] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for knob, minimum in (("shift", 0), ("images", 1)):
            value = getattr(self, knob)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{KEY}.{knob}", value, f"it must be a whole number >= {minimum}",
                                  f"use e.g. {KEY}.{knob}={max(minimum, 1)}")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        network = network_of(pl_module)
        if not has_stages(network):
            log.warning("diagnostics: %s has no encoder stages; no shift-invariance measurement",
                        type(network).__name__)
            return
        images = fixed_images(trainer, "test", self.images)
        if images is None or not len(images):
            return
        images = images.to(pl_module.device)
        with evaluating(network):
            self.result = stage_differences(network, images, self.shift)
            for s, value in enumerate(self.result, start=1):
                pl_module.log(METRIC.format(s), value, on_step=False, on_epoch=True)
            if self.figure and trainer.is_global_zero:
                figure = invariance_figure(network, images[0], self.shift, self.result)
                log_image(trainer, TAG, render_figure(figure), trainer.global_step)
