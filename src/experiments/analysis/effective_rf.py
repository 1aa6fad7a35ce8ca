"""Effective receptive field: which input pixels one output unit actually depends on, by its gradient.

Luo et al. (2016), "Understanding the Effective Receptive Field in Deep CNNs": the gradient of one
output unit with respect to the input. The bounding box of its support is the receptive field the
network actually has for that unit; averaged over a few random inputs (so that ReLU / max-pool gating
does not hide an edge) it equals the theoretical value of :mod:`.receptive_field` clipped to the image,
which makes it a test oracle for that analysis. It can be smaller where the theory is a worst case over
positions (transposed convolutions with ``s`` not dividing ``(k-1)*d``, non-integer resampling,
max-unpooling followed by a convolution), or where the weights make some taps exactly zero (identity-
initialised context modules). The gradient mass is roughly Gaussian and much narrower than the support.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .rf_tracing import TrainingFlagsRestored, model_device_dtype


@dataclass
class ERF:
    """Result of the gradient probe.

    ``grad``: (H, W) map of ``|d y / d x|`` summed over input channels (and batch), averaged over
    the probe inputs, where ``y`` is the probed output unit.  ``bbox``: inclusive
    (top, left, bottom, right) of the pixels with ``grad > threshold * grad.max()``; ``extent`` is
    its (height, width) -- the empirical theoretical receptive field, clipped to the image.
    ``effective``: per-axis length of the central interval holding ``mass`` of the marginal
    gradient mass (``(1 - mass) / 2`` trimmed from each tail), ``effective_bbox`` the matching box.
    ``sigma``/``centre``: gradient-weighted standard deviation / mean per axis (Luo et al. report
    the ERF as roughly Gaussian; ``4 * sigma`` is its ±2σ width).  ``output_index``: spatial index
    of the probed output unit, ``()`` when the output has no spatial axes (the sum of all outputs
    is probed).
    """

    grad: torch.Tensor
    extent: tuple[int, int]
    bbox: tuple[int, int, int, int] | None
    effective: tuple[int, int]
    effective_bbox: tuple[int, int, int, int] | None
    sigma: tuple[float, float]
    centre: tuple[float, float]
    output_index: tuple[int, ...]
    mass: float
    threshold: float

    @property
    def rf(self) -> int:
        """Largest side of the support's bounding box."""
        return max(self.extent)

    @property
    def effective_rf(self) -> int:
        return max(self.effective)


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        values = [out["out"]] if "out" in out else list(out.values())
        for v in values:
            if isinstance(v, torch.Tensor):
                return v
    if isinstance(out, (tuple, list)):
        for v in out:
            if isinstance(v, torch.Tensor):
                return v
    raise TypeError(f"model output of type {type(out).__name__} contains no tensor")


def _central_interval(profile: torch.Tensor, mass: float) -> tuple[int, int]:
    total = float(profile.sum())
    cdf = torch.cumsum(profile, 0) / total
    tail = (1.0 - mass) / 2.0
    eps = 1e-12
    lo = int(torch.nonzero(cdf > tail + eps)[0])
    hi = int(torch.nonzero(cdf >= 1.0 - tail - eps)[0])
    return lo, max(lo, hi)


def effective_receptive_field(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 3, 64, 64),
    threshold: float = 0.0,
    *,
    mass: float = 0.95,
    input_mode: str = "random",
    n_samples: int = 4,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = torch.float64,
) -> ERF:
    """Empirical receptive field: gradient of the centre output unit w.r.t. the input.

    The model is put in eval mode (training flags restored afterwards; BatchNorm statistics are
    not touched).  Probe inputs: ``input_mode="random"`` draws ``n_samples`` standard-normal
    inputs from a generator seeded with ``seed`` (deterministic; several samples make it very
    unlikely that ReLU or max-pool gating hides an edge of the receptive field), ``"ones"`` uses a
    single all-ones input.  For a (N, K, H', W') output the probed scalar is the sum over batch
    and channels at ``(H'//2, W'//2)``; for a (N, K) classifier it is the sum of all logits (the
    whole image is then the receptive field).  Tuple/dict outputs use their first tensor (or
    ``"out"``).

    ``dtype`` (default float64): the probe runs on a deep copy cast to this dtype, so that the
    gradient is exactly zero outside the receptive field (no Winograd/FFT round-off) and deep
    chains do not underflow; pass ``None`` to use the model as is.  ``threshold`` is relative to
    the maximum gradient; the default 0 means "any non-zero gradient".
    """
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    if input_mode not in ("random", "ones"):
        raise ValueError(f"input_mode must be 'random' or 'ones', got {input_mode!r}")
    if not 0.0 < mass <= 1.0:
        raise ValueError("mass must be in (0, 1]")
    model_device, model_dtype = model_device_dtype(model)
    device = torch.device(device) if device is not None else model_device
    probe = model
    if dtype is not None and dtype != model_dtype:
        probe = copy.deepcopy(model).to(dtype=dtype)
    work_dtype = dtype if dtype is not None else model_dtype

    gen = torch.Generator().manual_seed(seed)
    samples = n_samples if input_mode == "random" else 1
    total = torch.zeros(tuple(input_shape[2:]), dtype=torch.float64)
    index: tuple[int, ...] = ()
    with TrainingFlagsRestored(model), torch.enable_grad():
        probe.eval()
        for _ in range(samples):
            if input_mode == "random":
                x = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float64)
            else:
                x = torch.ones(tuple(input_shape), dtype=torch.float64)
            x = x.to(device=device, dtype=work_dtype).requires_grad_(True)
            out = _first_tensor(probe(x))
            if out.dim() >= 3:
                index = tuple(s // 2 for s in out.shape[2:])
                target = out[(slice(None), slice(None), *index)].sum()
            else:
                index = ()
                target = out.sum()
            (grad,) = torch.autograd.grad(target, x)
            total += grad.detach().abs().sum(dim=(0, 1)).to("cpu", torch.float64)
    grad_map = total / samples

    peak = float(grad_map.max())
    support = grad_map > threshold * peak if peak > 0 else torch.zeros_like(grad_map, dtype=torch.bool)
    if bool(support.any()):
        rows = torch.nonzero(support.any(dim=1)).flatten()
        cols = torch.nonzero(support.any(dim=0)).flatten()
        bbox: tuple[int, int, int, int] | None = (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
        extent = (bbox[2] - bbox[0] + 1, bbox[3] - bbox[1] + 1)  # type: ignore[index]
        prof_h, prof_w = grad_map.sum(dim=1), grad_map.sum(dim=0)
        (t, b), (l_, r) = _central_interval(prof_h, mass), _central_interval(prof_w, mass)
        eff_bbox: tuple[int, int, int, int] | None = (t, l_, b, r)
        effective = (b - t + 1, r - l_ + 1)
        w = grad_map / grad_map.sum()
        ys = torch.arange(grad_map.shape[0], dtype=torch.float64)
        xs = torch.arange(grad_map.shape[1], dtype=torch.float64)
        cy, cx = float((w.sum(1) * ys).sum()), float((w.sum(0) * xs).sum())
        sy = math.sqrt(float((w.sum(1) * (ys - cy) ** 2).sum()))
        sx = math.sqrt(float((w.sum(0) * (xs - cx) ** 2).sum()))
    else:
        bbox, eff_bbox, extent, effective = None, None, (0, 0), (0, 0)
        cy = cx = sy = sx = math.nan
    return ERF(
        grad=grad_map,
        extent=extent,
        bbox=bbox,
        effective=effective,
        effective_bbox=eff_bbox,
        sigma=(sy, sx),
        centre=(cy, cx),
        output_index=index,
        mass=mass,
        threshold=threshold,
    )


def save_erf_heatmap(erf: ERF, path: str | Path, *, title: str | None = None, dpi: int = 100) -> Path:
    """Write the ERF gradient map as a PNG heat map with its support and effective boxes.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch), imported lazily
    so that the analysis itself depends on torch only.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(erf.grad.detach().cpu().float().numpy(), cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="|d y / d x|")
    for box, colour, style, label in (
        (erf.bbox, "red", "-", f"support {erf.extent[0]}x{erf.extent[1]}"),
        (erf.effective_bbox, "white", "--", f"{erf.mass:.0%} mass {erf.effective[0]}x{erf.effective[1]}"),
    ):
        if box is not None:
            top, left, bottom, right = box
            ax.add_patch(
                Rectangle(
                    (left - 0.5, top - 0.5),
                    right - left + 1,
                    bottom - top + 1,
                    fill=False,
                    edgecolor=colour,
                    linestyle=style,
                    linewidth=1.2,
                    label=label,
                )
            )
    if erf.bbox is not None:
        ax.legend(loc="upper right", fontsize="small", framealpha=0.6)
    ax.set_title(title or "Effective receptive field")
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=dpi)
    return path
