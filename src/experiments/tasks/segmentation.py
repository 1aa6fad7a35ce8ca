"""Semantic segmentation: a class per pixel; pixel accuracy and mean IoU as the metrics.

Pixel accuracy is dominated by the background, so the checkpoint is chosen by mean IoU (Jaccard index
averaged over classes, background included), which weighs a small shape as much as the background.
The test split also reports every class's IoU, to show *which* shapes a design gets wrong.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from experiments.diagnostics.sinks import log_image
from experiments.tasks.base import OptimizerFactory, SchedulerFactory, Task

#: validation samples shown in TensorBoard every validation epoch
SAMPLES = 4


#: black background so the shapes stand out, then tab10's well separated colours
MASK_COLOURS = (
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def palette(num_classes: int) -> torch.Tensor:
    """(C, 3) uint8 RGB, the one mask palette: TensorBoard's sample grids and ``evaluate --predict``'s PNGs.

    Class k's colour does not depend on C, so a class looks the same in every run and output; classes past
    :data:`MASK_COLOURS` get golden-ratio-spaced hues, all distinct.
    """
    colours = list(MASK_COLOURS[:num_classes])
    for k in range(len(colours), num_classes):
        rgb = colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.65, 0.95)
        colours.append(tuple(round(255 * c) for c in rgb))
    return torch.tensor(colours, dtype=torch.uint8).view(-1, 3)


def sample_grid(images: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(3, n*H, 3*W) image: one row per sample, columns input | ground truth | prediction.

    Inputs are standardised, so each is min-max scaled for display; masks are colour-coded with
    :func:`palette` (as k/255, which TensorBoard's x255 turns back into exactly k). A grayscale input is
    repeated to RGB. Target pixels outside the classes (``ignore_index``, VOC's 255 borders) are white.
    """
    colours = torch.cat([palette(num_classes).float() / 255, torch.ones(1, 3)])
    targets = torch.where((targets >= 0) & (targets < num_classes), targets, num_classes)
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    shown = (images - lo) / (hi - lo).clamp_min(1e-6)
    if shown.shape[1] != 3:  # grayscale (or other channel counts): show the first channel in gray
        shown = shown[:, :1].expand(-1, 3, -1, -1)
    truth = colours[targets].permute(0, 3, 1, 2)
    pred = colours[preds].permute(0, 3, 1, 2)
    rows = torch.cat([shown, truth, pred], dim=3)  # (n, 3, H, 3W)
    return torch.cat(list(rows), dim=1)  # (3, nH, 3W)


class SegmentationTask(Task):
    """Per-pixel classification of (N, C, H, W) logits against (N, H, W) integer masks."""

    monitor = "val/miou"
    monitor_mode = "max"

    def __init__(
        self,
        network: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        class_names: Sequence[str] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index  # unlabelled pixels (VOC's 255): counted by no metric, as by no loss
        super().__init__(network, loss, optimizer, scheduler)
        self.class_names = list(class_names) if class_names is not None else None
        self.test_iou = MulticlassJaccardIndex(num_classes, average="none", ignore_index=ignore_index)
        self._samples_logged = False

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({
            "pixel_acc": MulticlassAccuracy(self.num_classes, average="micro", ignore_index=self.ignore_index),
            "miou": MulticlassJaccardIndex(self.num_classes, average="macro", ignore_index=self.ignore_index),
        })

    def names(self) -> list[str]:
        """Names for ``test/iou_<name>``: given, else the data module's (background + shape kinds), else indices."""
        if self.class_names is not None and len(self.class_names) == self.num_classes:
            return self.class_names
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        named = getattr(datamodule, "class_names", None)
        kinds = getattr(datamodule, "kinds", None)
        if named is not None and len(named) == self.num_classes:
            return list(named)
        if kinds is not None and len(kinds) + 1 == self.num_classes:
            return ["background", *kinds]
        return [str(i) for i in range(self.num_classes)]

    def after_step(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, split: str) -> None:
        if split == "test":
            self.test_iou.update(logits.detach(), y)
        elif split == "val" and not self._samples_logged:
            # the val loader is not shuffled, so its first batch is the same fixed samples every epoch
            self._samples_logged = True
            self.log_samples(x[:SAMPLES], y[:SAMPLES], logits[:SAMPLES].argmax(dim=1))

    def on_validation_epoch_start(self) -> None:
        self._samples_logged = False

    def log_samples(self, x: torch.Tensor, y: torch.Tensor, preds: torch.Tensor) -> None:
        """Input | ground truth | prediction for a few fixed validation images, where the logger takes images."""
        if self.trainer.sanity_checking:
            return
        grid = sample_grid(x.detach().float().cpu(), y.cpu(), preds.cpu(), self.num_classes)
        image = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        log_image(self.trainer, "val/samples", image, self.global_step)

    def on_test_epoch_end(self) -> None:
        ious = self.test_iou.compute()
        self.log_dict({f"test/iou_{name}": iou for name, iou in zip(self.names(), ious, strict=True)})
        self.test_iou.reset()
