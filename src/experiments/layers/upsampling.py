"""Upsampling factories: how a segmentation network brings coarse class scores back to the input size.

The ``upsampling`` group compares the methods of the FCN and SegNet papers on one network:

* ``bilinear`` / ``nearest`` – fixed interpolation (``F.interpolate``, ``align_corners=False``);
* ``transposed`` – a ``ConvTranspose2d`` initialised to the bilinear kernel, learnable or frozen, as in
  Long et al. 2015 ("deconvolution");
* ``unpool`` – ``MaxUnpool2d`` with the argmax indices recorded by the matching max-pool, as in SegNet
  (Badrinarayanan et al. 2017). It can only undo one pooling step at a time, with that step's indices.

Every upsampling module has the same call, ``module(x, size, indices=None)``: ``size`` is the exact
spatial size to produce and ``indices`` the pooling indices (only ``unpool`` reads them). A model never
names a method; it describes the pooling steps it wants undone and asks :meth:`UpsamplingFactory.path`
for a module that undoes them, so the four methods plug into the same slots of the same network.

Sizes: pooling floors, so an odd input of 65 px pools to 32 and the integer-factor upsample gives 64.
The missing last row/column is the one the pool dropped, so it is added at the bottom/right
(replicate padding, or the transposed conv's own output padding) rather than by stretching the whole
map, which would shift every pixel relative to the pooling grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLINGS = ("bilinear", "nearest", "transposed", "unpool")

Size = Sequence[int] | torch.Size


def pad_to(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Replicate-pad ``x`` at the bottom/right up to ``size`` (the rows a flooring pool dropped)."""
    return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]), mode="replicate")


def bilinear_kernel(factor: int) -> torch.Tensor:
    """The (2f - f%2)-tap 2-D bilinear kernel of Long et al. 2015 (their ``upsample_filt``).

    A transposed conv with this kernel, stride f and padding ceil((f-1)/2) computes exactly what
    ``F.interpolate(scale_factor=f, mode="bilinear", align_corners=False)`` computes, except in the
    outermost pixels where interpolation clamps and the transposed conv sees zeros.
    """
    size = 2 * factor - factor % 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(taps, taps).float()


class Interpolate(nn.Module):
    """Fixed interpolation by an integer factor, then padded to the exact size."""

    def __init__(self, mode: str, factor: int) -> None:
        super().__init__()
        self.mode = mode
        self.factor = factor

    def forward(self, x: torch.Tensor, size: Size, indices: torch.Tensor | None = None) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None
        up = F.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=align)
        return pad_to(up, size)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, factor={self.factor}"


class BilinearTransposed(nn.Module):
    """``ConvTranspose2d`` C -> C initialised to per-channel bilinear interpolation (Long et al. 2015).

    ``keep_init`` tells :func:`experiments.layers.init.initialise` to leave the bilinear weights alone;
    ``learnable=False`` freezes them, which makes this a (border-zero-padded) bilinear interpolation.
    """

    keep_init = True

    def __init__(self, channels: int, factor: int, learnable: bool = True) -> None:
        super().__init__()
        size = 2 * factor - factor % 2
        self.conv = nn.ConvTranspose2d(
            channels, channels, size, stride=factor, padding=math.ceil((factor - 1) / 2), bias=False
        )
        self.conv.keep_init = True
        with torch.no_grad():
            self.conv.weight.zero_()
            kernel = bilinear_kernel(factor)
            for c in range(channels):  # diagonal: channel c up-samples channel c, no mixing at init
                self.conv.weight[c, c] = kernel
        self.conv.weight.requires_grad_(learnable)
        self.factor = factor

    def forward(self, x: torch.Tensor, size: Size, indices: torch.Tensor | None = None) -> torch.Tensor:
        # output_size lets the transposed conv compute the extra bottom/right row of an odd size itself;
        # passed as given (a torch.Size is fine), since list() of a torch.fx Proxy cannot be traced
        return self.conv(x, output_size=size)


class Unpool(nn.Module):
    """``MaxUnpool2d``: every value goes back to where its pooling window's maximum was (SegNet).

    Indices are per channel, so they fit only a map with the pooled layer's channel count. When the
    model unpools a map of another width (FCN class scores), a 1x1 conv lifts it to ``index_channels``,
    the lifted map is unpooled exactly at the recorded argmax positions, and a 3x3 conv brings it back
    to ``channels``. That conv is SegNet's lesson: an unpooled map is sparse (one value per window and
    channel), and a decoder conv must densify it — without one, pixels where no channel peaked stay
    empty (measured here: FCN mean IoU 0.36 with a 1x1 instead of 0.8). Its parameters (9 x index
    channels x channels) are of the order of a transposed conv's, which keeps the comparison fair.
    """

    def __init__(self, channels: int, factor: int, index_channels: int | None = None) -> None:
        super().__init__()
        self.factor = factor
        self.unpool = nn.MaxUnpool2d(factor, factor)
        lift = index_channels is not None and index_channels != channels
        self.lift = nn.Conv2d(channels, index_channels, 1) if lift else nn.Identity()
        self.densify = nn.Conv2d(index_channels, channels, 3, padding=1) if lift else nn.Identity()

    def place(self, x: torch.Tensor, size: Size, indices: torch.Tensor | None) -> torch.Tensor:
        """The sparse map: (lifted) values at their argmax positions, zeros elsewhere."""
        if indices is None:
            raise ValueError("upsampling=unpool needs the indices of the matching max-pool; got none")
        return self.unpool(self.lift(x), indices, output_size=size)  # as given: traceable, like above

    def forward(self, x: torch.Tensor, size: Size, indices: torch.Tensor | None = None) -> torch.Tensor:
        return self.densify(self.place(x, size, indices))


class UpsamplePath(nn.Module):
    """Undo a chain of pooling steps: one module for the whole factor, or one per step for ``unpool``.

    ``forward(x, sizes, indices)`` takes the pre-pool sizes and indices of the steps being undone, deepest
    first; a merged path uses only the last (the target) size, as FCN-32s's single x32 deconv does.
    """

    def __init__(self, steps: Sequence[nn.Module], merged: bool) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.merged = merged

    def forward(
        self, x: torch.Tensor, sizes: Sequence[Size], indices: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        if self.merged:
            return self.steps[0](x, sizes[-1])
        indices = list(indices) if indices is not None else [None] * len(sizes)
        for step, size, idx in zip(self.steps, sizes, indices, strict=True):
            x = step(x, size, idx)
        return x


@dataclass(frozen=True)
class UpsamplingFactory:
    """Builds upsampling modules of one kind; see the module docstring.

    ``needs_indices`` tells a model to make its max-pools record indices and to undo them one by one.
    """

    name: str = "bilinear"
    learnable: bool = True  # only for ``transposed``

    def __post_init__(self) -> None:
        if self.name not in UPSAMPLINGS:
            raise ValueError(f"unknown upsampling {self.name!r}; choose one of {list(UPSAMPLINGS)}")

    @property
    def needs_indices(self) -> bool:
        return self.name == "unpool"

    def __call__(self, channels: int, scale_factor: int, index_channels: int | None = None) -> nn.Module:
        """One module that multiplies the spatial size by ``scale_factor`` (and pads to the exact size)."""
        if scale_factor < 1:
            raise ValueError(f"upsampling scale_factor must be >= 1, got {scale_factor}")
        if self.name in ("bilinear", "nearest"):
            return Interpolate(self.name, scale_factor)
        if self.name == "transposed":
            return BilinearTransposed(channels, scale_factor, self.learnable)
        return Unpool(channels, scale_factor, index_channels)

    def path(self, channels: int, factors: Sequence[int], index_channels: Sequence[int] | None = None) -> UpsamplePath:
        """A module undoing pooling steps with the given factors (deepest first) on a ``channels``-wide map.

        ``index_channels`` are the channel counts of those pools (what their indices fit), needed by ``unpool``.
        """
        if not factors:
            raise ValueError("an upsampling path needs at least one pooling step to undo")
        if not self.needs_indices:
            return UpsamplePath([self(channels, math.prod(factors))], merged=True)
        widths = list(index_channels) if index_channels is not None else [None] * len(factors)
        return UpsamplePath([self(channels, f, w) for f, w in zip(factors, widths, strict=True)], merged=False)


def upsampling_factory(name: str = "bilinear", learnable: bool = True) -> UpsamplingFactory:
    """Hydra target of the ``upsampling`` group."""
    return UpsamplingFactory(name, learnable)
