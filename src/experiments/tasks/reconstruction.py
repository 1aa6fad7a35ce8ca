"""Reconstruction: the unsupervised task. The network's target is its own input; the data's labels are ignored.

Every data module standardises its images with the training split's per-channel mean/std (``data.mean``,
``data.std``), so a batch ``x`` is standardised, while the pixels the data came from lie in [0, 1]. The two
reconstruction losses differ in which of the two they reconstruct:

* ``loss=pixel_mse`` (:class:`PixelMSE`): the per-pixel squared error between the output and the
  *standardised* input, averaged over batch, channels and pixels. A linear output, the usual autoencoder.
* ``loss=pixel_bce`` (:class:`PixelBCE`): binary cross-entropy between sigmoid(output) and the input's
  *pixels* ``x * std + mean`` in [0, 1], read as the probabilities of Bernoulli pixels (Bengio et al. 2007;
  Vincent et al. 2008). Its minimum is not zero for grey pixels (the entropy of p), so its values compare only
  with other BCE runs.

Metrics compare both on the common pixel scale: the reconstruction is mapped to [0, 1] pixels (un-standardised,
or sigmoid for BCE; clamped to [0, 1], where every real pixel lies) and ``psnr`` is torchmetrics' peak
signal-to-noise ratio with ``data_range=1``: 10 log10(1 / MSE) over all pixels of the epoch. PSNR is the
monitor (``val/psnr``, larger is better) because, unlike the loss, it means the same under both losses.
A few fixed validation images and their reconstructions go to every image logger each validation epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio

from experiments.diagnostics.sinks import log_image
from experiments.specs import TASKS
from experiments.tasks.base import OptimizerFactory, SchedulerFactory, Task

#: validation samples shown as input | reconstruction every validation epoch
SAMPLES = 4

STANDARDISED, PIXELS = "standardised", "pixels"


class PixelMSE(nn.Module):
    """Mean squared error per pixel, on the standardised scale the network sees: mean over N, C, H and W."""

    target_space = STANDARDISED

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

    def reconstruct(self, output: torch.Tensor) -> torch.Tensor:
        """The reconstruction in the target's space: the output itself (linear output units)."""
        return output


class PixelBCE(nn.Module):
    """Binary cross-entropy of sigmoid(output) against pixel intensities in [0, 1], mean over N, C, H and W."""

    target_space = PIXELS

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, target)

    def reconstruct(self, output: torch.Tensor) -> torch.Tensor:
        return output.sigmoid()


def sample_grid(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """(3, n*H, 2*W) image in [0, 1]: one row per sample, input | reconstruction, both already pixels.

    Unlike segmentation's grid nothing is min-max scaled: both halves are on the data's own pixel scale, so
    a washed-out reconstruction looks washed out. Grayscale is repeated to RGB."""
    rows = torch.cat([images, reconstructions], dim=3).clamp(0, 1)
    if rows.shape[1] != 3:
        rows = rows[:, :1].expand(-1, 3, -1, -1)
    return torch.cat(list(rows), dim=1)


class ReconstructionTask(Task):
    """The network maps an (N, C, H, W) batch to an output of the same shape that reconstructs it."""

    monitor = TASKS["reconstruction"].monitor
    monitor_mode = TASKS["reconstruction"].mode

    def __init__(
        self,
        network: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        num_classes: int | None = None,
        ignore_index: int | None = None,
    ) -> None:
        """``num_classes`` and ``ignore_index`` are the common task interface's and unused: no labels are read."""
        if getattr(loss, "target_space", None) not in (STANDARDISED, PIXELS):
            raise ValueError(f"{type(loss).__name__} is not a reconstruction loss; use PixelMSE or PixelBCE")
        super().__init__(network, loss, optimizer, scheduler)
        # the data's pixel statistics (not weights: they come from the data module, or metrics.json when predicting)
        self.register_buffer("pixel_mean", torch.zeros(1, 1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.ones(1, 1, 1, 1), persistent=False)
        self._samples_logged = False

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"psnr": PeakSignalNoiseRatio(data_range=1.0)})

    def set_pixel_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The per-channel mean/std the data was standardised with; without them inputs count as pixels already."""
        device = self.pixel_mean.device
        self.pixel_mean = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.pixel_std = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
        if mean and std:
            self.set_pixel_stats(mean, std)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pixel_std + self.pixel_mean

    def reconstruct_pixels(self, output: torch.Tensor) -> torch.Tensor:
        """The network's output as [0, 1] pixels, whichever loss it was trained with."""
        recon = self.loss_fn.reconstruct(output)
        return (self.to_pixels(recon) if self.loss_fn.target_space == STANDARDISED else recon).clamp(0, 1)

    def loss_target(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The input itself, in the space the loss compares in (standardised, or pixels for ``pixel_bce``); the
        data's labels ``y`` are not this task's."""
        return x if self.loss_fn.target_space == STANDARDISED else self.to_pixels(x)

    def _step(self, batch: tuple[torch.Tensor, ...], split: str) -> torch.Tensor:
        x = batch[0]  # the labels (or masks) that follow are the data's, not this task's
        output = self(x)
        pixels = self.to_pixels(x)
        target = self.loss_target(x)
        loss = self.loss_fn(output, target)
        training = split == "train"
        self.log(f"{split}/loss", loss, on_step=training, on_epoch=True, prog_bar=True, sync_dist=True)
        recon = self.reconstruct_pixels(output.detach())
        metrics = getattr(self, f"{split}_metrics")
        metrics.update(recon, pixels)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=split == "val")
        if split == "val" and not self._samples_logged:
            # the val loader is not shuffled, so its first batch holds the same fixed samples every epoch
            self._samples_logged = True
            self.log_samples(pixels[:SAMPLES], recon[:SAMPLES])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._samples_logged = False

    def log_samples(self, pixels: torch.Tensor, recon: torch.Tensor) -> None:
        """Input | reconstruction for the fixed validation images, to every image logger and figures/."""
        if self.trainer.sanity_checking:
            return
        grid = sample_grid(pixels.float().cpu(), recon.float().cpu())
        image = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        log_image(self.trainer, "val/reconstructions", image, self.global_step)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Reconstructions as [0, 1] pixels."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.reconstruct_pixels(self(x))
