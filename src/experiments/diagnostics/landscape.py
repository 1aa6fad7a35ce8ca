"""The loss landscape of a run: why it trains, seen as the shape of the loss around its solution.

Three measurements (the numbers in :mod:`experiments.analysis.landscape`, pure tensors; this module picks the
images, draws the figures and hands the numbers to the run's record and TensorBoard):

* **Interpolation** from the run's initial weights (``checkpoints/init.ckpt``) to its tested ones, train and
  validation loss and accuracy along the straight line (Goodfellow, Vinyals & Saxe, ICLR 2015): a monotone
  descent says no barrier separates the start from the solution.
* **Slices** around the solution along two random *filter-normalised* directions (Li et al., NeurIPS 2018, §4:
  each filter of a direction has the norm of the matching weight filter, so a step of 1 means the same relative
  change in every layer, whatever its scale; bias and BatchNorm directions are zero, as in their code): two 1D
  curves, a contour map and a surface. ``loss_rise`` condenses them: the mean training-loss increase at
  filter-normalised radius ``radius`` along both directions, both ways.
* **Curvature** of the loss at the solution: the Hessian's top eigenvalues (Lanczos on exact Hessian-vector
  products), its most negative one and Li et al.'s convexity measure |λ_min/λ_max| (their §7), and its trace
  (Hutchinson's estimator, with a standard error), from ``curvature_images`` images.

BatchNorm and dropout are in eval mode throughout: the loss is the one the run is evaluated with, using the
run's running statistics (the figures say so), which is also what makes a slice well defined (train-mode batch
statistics would change with every batch). The metrics go to ``metrics.json`` named by the split measured
(``train/top_eig``, ``train/hessian_trace``, ``train/eig_ratio``, ``train/loss_rise``), the curves to
``landscape.json``, the figures to ``<run dir>/figures/landscape__*/`` and TensorBoard (``landscape/...``,
``curvature/top_eig``, ``curvature/trace``).

:class:`Sharpness` is the other use of curvature: the top eigenvalue tracked *during* training, the quantity
Cohen et al. (ICLR 2021) found full-batch gradient descent drives up to 2/η ("the edge of stability").
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.analysis import landscape as ls
from experiments.diagnostics.sinks import log_image, log_scalars, network_of, render_figure

#: the metrics.json names (after ``<split>/``) of the landscape's numbers
TOP_EIG, TRACE, RATIO, RISE = "top_eig", "hessian_trace", "eig_ratio", "loss_rise"
#: TensorBoard scalar tags
TAGS = {TOP_EIG: "curvature/top_eig", TRACE: "curvature/trace", RATIO: "curvature/eig_ratio",
        RISE: "landscape/loss_rise"}
#: figure tags (``figures/<tag>/step_<n>.png``)
FIGURES = ("landscape/interpolation", "landscape/slices", "landscape/contour", "landscape/surface")
#: what the figures say about BatchNorm
BN_NOTE = "BatchNorm in eval mode (the run's running statistics)"


@dataclass
class LandscapeSettings:
    """What is measured and on how much data. The defaults take well under a minute for the default model on two
    CPU cores (``benchmarks`` and the closing notes have the figure); raise ``grid``/``images`` on a GPU."""

    #: whose loss: ``train`` (the objective the optimiser saw; Li et al., Keskar et al.) or ``val``
    split: str = "train"
    #: images of that split (its first ones, the same every time) for interpolation and slices
    images: int = 256
    batch_size: int = 128
    #: interpolation points, α from -0.5 to 1.5 (0: the initial weights, 1: the run's)
    interpolation_points: int = 21
    #: 1D slice points per direction over [-span, span]
    slice_points: int = 21
    #: 2D grid points per axis over [-span, span]² (0: no contour or surface)
    grid: int = 11
    span: float = 1.0
    #: the filter-normalised radius of ``loss_rise``
    radius: float = 0.5
    #: Hessian: how many top eigenvalues, Lanczos steps, Hutchinson probes, and on how many images
    eigenvalues: int = 3
    lanczos_iters: int = 20
    trace_samples: int = 10
    curvature_images: int = 256
    #: seed of the directions and of the curvature's random start vectors and probes
    seed: int = 0


def split_tensors(datamodule: Any, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(images, targets) of a split as the data module holds it in memory (``splits``), None when it does not."""
    splits = getattr(datamodule, "splits", None) or {}
    split = splits.get(name) if isinstance(splits, dict) else None
    tensors = getattr(split, "tensors", None)
    return (tensors[0], tensors[1]) if tensors is not None and len(tensors) >= 2 else None


def objective(task: Any) -> tuple[ls.LossFn, ls.MetricFn | None, Callable]:
    """(loss, metric, target) of a task: its own loss on ``network(x)`` against ``task.loss_target(x, y)``, and
    accuracy (classification; pixel accuracy over labelled pixels for segmentation) where targets are labels."""
    ignore = getattr(task, "ignore_index", None)

    def metric(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        predicted = output.argmax(dim=1)
        valid = torch.ones_like(target, dtype=torch.bool) if ignore is None else target != ignore
        return ((predicted == target) & valid).sum().float() / valid.sum().clamp(min=1)

    labelled = not hasattr(task, "reconstruct_pixels")
    return task.loss_fn, (metric if labelled else None), task.loss_target


def batches_of(task: Any, images: torch.Tensor, labels: torch.Tensor, count: int, batch_size: int,
               device: torch.device) -> list[ls.Batch]:
    """The first ``count`` images in batches of ``batch_size``, with the task's loss targets, on ``device``."""
    _, _, target = objective(task)
    images, labels = images[:count], labels[:count]
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        y = labels[start:start + batch_size].to(device)
        out.append((x, target(x, y)))
    return out


def has_batch_norm(network: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())


def initial_params(path: Any, network: nn.Module) -> ls.Params | None:
    """The trainable weights of ``network`` as the run's ``init.ckpt`` holds them (through the safe loader), None
    without the file (runs from before it was written)."""
    from pathlib import Path

    from experiments.run.checkpoints import load_checkpoint

    if path is None or not Path(path).is_file():
        return None
    state = load_checkpoint(path)["state_dict"]
    weights = {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}
    device = next(network.parameters()).device
    return {name: weights[name].to(device) for name, p in network.named_parameters() if p.requires_grad}


class _Bar:
    """A tqdm bar over the landscape's evaluations (or nothing)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="landscape", unit="eval", file=sys.stderr, leave=False)

    def __call__(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def measure(task: Any, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor] | None,
            init: ls.Params | None, settings: LandscapeSettings, progress: bool = False) -> dict[str, Any]:
    """Every number of the landscape for ``task``'s network at its current weights (the dict saved as
    ``landscape.json``). ``train``/``val``: a split's (images, labels); ``settings.split`` says which one the
    slices and curvature use. The network is put in eval mode and left as it was found."""
    network = task.network
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    loss_fn, metric_fn, _ = objective(task)
    s = settings
    measured = train if s.split == "train" or val is None else val
    batches = batches_of(task, *measured, s.images, s.batch_size, device)
    curvature_batches = batches_of(task, *measured, s.curvature_images, s.batch_size, device)
    other = batches_of(task, *val, s.images, s.batch_size, device) if val is not None and s.split == "train" \
        else None
    alphas = [-0.5 + 2.0 * i / max(1, s.interpolation_points - 1) for i in range(s.interpolation_points)]
    line = _coords(s.slice_points, s.span)
    grid = _coords(s.grid, s.span) if s.grid > 0 else []
    if init is None:
        alphas = []
    total = len(alphas) * (2 if other else 1) + 2 * len(line) + len(grid) ** 2
    bar = _Bar(total, progress)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            center = ls.trainable(network)
            loss, metric = ls.evaluate(network, center, batches, loss_fn, metric_fn)
            result: dict[str, Any] = {
                "settings": asdict(s), "split": s.split, "images": sum(len(b[0]) for b in batches),
                "batch_norm": BN_NOTE if has_batch_norm(network) else None, "loss": loss, "metric": metric,
            }
            if alphas:
                result["interpolation"] = {"alpha": alphas, s.split: ls.interpolate(
                    network, init, center, alphas, batches, loss_fn, metric_fn, progress=bar)}
                if other:
                    result["interpolation"]["val"] = ls.interpolate(network, init, center, alphas, other, loss_fn,
                                                                    metric_fn, progress=bar)
            generator = torch.Generator().manual_seed(s.seed)
            d1 = ls.filter_normalized_direction(network, generator)
            d2 = ls.filter_normalized_direction(network, generator)
            slices = [ls.slice_1d(network, center, d, line, batches, loss_fn, metric_fn, progress=bar)
                      for d in (d1, d2)]
            result["slices"] = {"coords": line, "directions": slices}
            result[RISE] = _rise(slices, line, s.radius, loss)
            if grid:
                result["surface"] = ls.slice_2d(network, center, d1, d2, grid, batches, loss_fn, metric_fn,
                                                progress=bar)
            result["curvature"] = ls.curvature(network, center, curvature_batches, loss_fn, k=s.eigenvalues,
                                               iters=s.lanczos_iters, trace_samples=s.trace_samples, seed=s.seed)
    finally:
        bar.close()
        network.train(was_training)
    return result


def _coords(points: int, span: float) -> list[float]:
    if points <= 1:
        return [0.0]
    return [round(-span + 2.0 * span * i / (points - 1), 10) for i in range(points)]


def _rise(slices: Sequence[dict[str, Any]], coords: Sequence[float], radius: float, center: float) -> float | None:
    """Mean loss increase over the points at ±``radius`` of both slices (None when the grid lacks them)."""
    found = [i for i, c in enumerate(coords) if math.isclose(abs(c), radius, rel_tol=1e-6, abs_tol=1e-9)]
    values = [s["loss"][i] for s in slices for i in found]
    if not found or not all(math.isfinite(v) for v in values):
        return None
    return sum(values) / len(values) - center


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The landscape's numbers for ``metrics.json``, named by the split they were measured on."""
    split, curvature = result["split"], result.get("curvature") or {}
    values = {TOP_EIG: curvature.get("top_eig"), TRACE: curvature.get("trace"),
              RATIO: curvature.get("min_max_ratio"), RISE: result.get(RISE)}
    return {f"{split}/{name}": float(v) for name, v in values.items()
            if v is not None and math.isfinite(float(v))}


def scalars_of(result: dict[str, Any]) -> dict[str, float]:
    """The same numbers under their TensorBoard tags."""
    split = result["split"]
    return {TAGS[key.removeprefix(f"{split}/")]: value for key, value in metrics_of(result).items()}


# ------------------------------------------------------------------------------------------------- figures


def figures(result: dict[str, Any], title: str = "") -> dict[str, Any]:
    """Matplotlib figures by tag (:data:`FIGURES`), for what ``result`` holds."""
    from matplotlib.figure import Figure

    note = result.get("batch_norm") or "no BatchNorm layers"
    split = result["split"]
    made: dict[str, Any] = {}
    if "interpolation" in result:
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        alphas = result["interpolation"]["alpha"]
        acc_ax = ax.twinx() if result.get("metric") is not None else None
        for name, colour in ((split, "tab:blue"), ("val", "tab:orange")):
            curve = result["interpolation"].get(name)
            if curve is None:
                continue
            ax.plot(alphas, curve["loss"], color=colour, label=f"{name} loss")
            if acc_ax is not None and curve.get("metric") is not None:
                acc_ax.plot(alphas, curve["metric"], color=colour, linestyle="--", label=f"{name} accuracy")
        ax.axvline(0.0, color="grey", linewidth=0.6)
        ax.axvline(1.0, color="grey", linewidth=0.6)
        ax.set_xlabel("α  (0: initial weights, 1: the run's)")
        ax.set_ylabel("loss")
        if acc_ax is not None:
            acc_ax.set_ylim(0.0, 1.0)
            acc_ax.set_ylabel("accuracy (dashed)")
        ax.legend(loc="upper center", fontsize=8)
        _title(ax, title, "linear interpolation (Goodfellow et al. 2015)", note)
        fig.tight_layout()
        made[FIGURES[0]] = fig
    slices = result["slices"]
    if len(slices["coords"]) < 2:  # curvature only: no slice to draw
        return made
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, curve in enumerate(slices["directions"]):
        ax.plot(slices["coords"], curve["loss"], label=f"direction {i + 1}")
    ax.set_xlabel("step along a filter-normalised random direction")
    ax.set_ylabel(f"{split} loss")
    radius = result["settings"]["radius"]
    rise = result.get(RISE)
    ax.axvspan(-radius, radius, color="grey", alpha=0.1,
               label=f"±{radius:g}: mean rise {rise:.3g}" if rise is not None else f"±{radius:g}")
    ax.legend(fontsize=8)
    _title(ax, title, "1D slices (Li et al. 2018)", note)
    fig.tight_layout()
    made[FIGURES[1]] = fig
    surface = result.get("surface")
    if surface is not None:
        import numpy as np

        coords = np.asarray(surface["coords"])
        loss = np.asarray(surface["loss"], dtype=float)
        x, y = np.meshgrid(coords, coords)
        fig = Figure(figsize=(5.6, 4.8))
        ax = fig.add_subplot()
        finite = loss[np.isfinite(loss)]
        low, high = (float(finite.min()), float(np.percentile(finite, 95))) if finite.size else (0.0, 1.0)
        levels = np.linspace(low, high if high > low else low + 1.0, 15)
        shown = ax.contour(x, y, np.clip(loss, None, levels[-1]), levels=levels, cmap="viridis")
        ax.clabel(shown, fontsize=6, fmt="%.2g")
        fig.colorbar(shown, ax=ax, label=f"{split} loss")
        ax.plot([0], [0], marker="*", color="red", markersize=10)
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
        ax.set_aspect("equal")
        _title(ax, title, "2D slice, filter-normalised directions", note)
        fig.tight_layout()
        made[FIGURES[2]] = fig
        fig = Figure(figsize=(5.6, 4.8))
        ax = fig.add_subplot(projection="3d")
        ax.plot_surface(x, y, np.clip(loss, None, levels[-1]), cmap="viridis", linewidth=0, antialiased=True)
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
        ax.set_zlabel(f"{split} loss")
        _title(ax, title, "loss surface", note)
        made[FIGURES[3]] = fig
    return made


def _title(ax: Any, title: str, what: str, note: str) -> None:
    ax.set_title("\n".join(part for part in (title, what, note) if part), fontsize=8)


# ---------------------------------------------------------------------------------------------- callbacks


class LossLandscape(Callback):
    """The landscape of the tested weights (the best checkpoint, or the averaged ones), measured once the run's
    test ends: ``landscape.json``, figures to every image logger and ``figures/``, and the numbers into
    ``metrics.json`` (``run_metrics``). Opt-in: ``diagnostics=full`` turns it on, or ``+diagnostics.landscape=...``
    (conf/diagnostics/full.yaml has the entry to copy)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = LandscapeSettings(**settings)
        self.result: dict[str, Any] | None = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from experiments.run.layout import RunDir, write_json

        if not trainer.is_global_zero or getattr(pl_module, "network", None) is None:
            return
        data = trainer.datamodule
        train, val = split_tensors(data, "train"), split_tensors(data, "val")
        if train is None:
            return
        run = RunDir(trainer.default_root_dir)
        init = initial_params(run.init_checkpoint, network_of(pl_module))
        self.result = measure(pl_module, train, val, init, self.settings,
                              progress=trainer.progress_bar_callback is not None)
        write_json(run.landscape, self.result)
        step = trainer.global_step
        log_scalars(trainer, scalars_of(self.result), step)
        for tag, figure in figures(self.result).items():
            log_image(trainer, tag, render_figure(figure), step)

    def run_metrics(self) -> dict[str, float]:
        """``<split>/top_eig``, ``<split>/hessian_trace``, ``<split>/eig_ratio``, ``<split>/loss_rise``."""
        return metrics_of(self.result) if self.result is not None else {}


class Sharpness(Callback):
    """The Hessian's top eigenvalue of the training loss every ``every_n_steps`` optimiser steps (before the step),
    on the first ``images`` training images (None: all of them, as full-batch gradient descent sees them), logged as
    ``curvature/top_eig`` with ``curvature/two_over_lr`` (2/η, the edge of stability) and kept in ``metrics.json``
    (``sharpness``). Measured in eval mode: exact for a network without BatchNorm or dropout, which is what the
    edge-of-stability study trains (``experiment=edge_of_stability``)."""

    def __init__(self, every_n_steps: int = 10, images: int | None = None, batch_size: int = 512,
                 lanczos_iters: int = 20, seed: int = 0) -> None:
        self.every_n_steps = max(1, int(every_n_steps))
        self.images, self.batch_size = images, int(batch_size)
        self.lanczos_iters, self.seed = int(lanczos_iters), int(seed)
        self.history: dict[str, list[float]] = {"step": [], "top_eig": [], "lr": []}
        self._batches: list[ls.Batch] | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or (self.history["step"] and self.history["step"][-1] == step):
            return
        network = getattr(pl_module, "network", None)
        if network is None:
            return
        if self._batches is None:
            split = split_tensors(trainer.datamodule, "train")
            if split is None:
                return
            count = len(split[0]) if self.images is None else int(self.images)
            self._batches = batches_of(pl_module, *split, count, self.batch_size, pl_module.device)
        loss_fn, _, _ = objective(pl_module)
        was_training = network.training
        network.eval()
        try:
            params = ls.trainable(network)
            hvp = ls.hvp_operator(network, params, self._batches, loss_fn)
            top = ls.top_eigenvalues(hvp, params, k=1, iters=self.lanczos_iters,
                                     generator=torch.Generator().manual_seed(self.seed))[0]
        finally:
            network.train(was_training)
        lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else math.nan
        self.history["step"].append(step)
        self.history["top_eig"].append(float(top))
        self.history["lr"].append(lr)
        scalars = {"curvature/top_eig": float(top)}
        if lr > 0:
            scalars["curvature/two_over_lr"] = 2.0 / lr
        log_scalars(trainer, scalars, step)

    def run_summary(self) -> dict[str, Any]:
        return {"sharpness": self.history} if self.history["step"] else {}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict.get("history", self.history)
