"""Semantic segmentation: a class per pixel; pixel accuracy and mean IoU as the metrics.

Pixel accuracy is dominated by the background, so the checkpoint is chosen by mean IoU (Jaccard index
averaged over classes, background included), which weighs a small shape as much as the background.
The test split also reports every class's IoU, to show *which* shapes a design gets wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from experiments.analysis.per_class import segmentation_summary
from experiments.data.palette import palette
from experiments.diagnostics.sinks import log_image
from experiments.specs import TASKS
from experiments.tasks.base import OptimizerFactory, SchedulerFactory, Task

#: validation samples shown in TensorBoard every validation epoch
SAMPLES = 4


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

    monitor = TASKS["segmentation"].monitor
    monitor_mode = TASKS["segmentation"].mode

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
        self.test_images = SumMetric()  # summed over DDP ranks: the test count metrics.json records
        #: each test image's per-class intersection and union, in test order (one process only; see per_image_result)
        self._per_image: list[torch.Tensor] = []
        self._samples_logged = False
        #: the last test split's class names and per-class IoU; None until a test epoch ends
        self.test_result: tuple[list[str], list[float]] | None = None
        self.test_count: int | None = None

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
            self.test_images.update(torch.tensor(float(y.shape[0]), device=y.device))
            self._per_image.append(per_image_counts(logits.detach().argmax(dim=1), y, self.num_classes).cpu())
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

    def on_test_epoch_start(self) -> None:
        self._per_image = []
        self.test_images.reset()

    def on_test_epoch_end(self) -> None:
        ious = self.test_iou.compute()
        self.log_dict({f"test/iou_{name}": iou for name, iou in zip(self.names(), ious, strict=True)})
        self.test_iou.reset()
        self.test_result = (self.names(), ious.tolist())
        self.test_count = int(self.test_images.compute().item())
        self.test_images.reset()

    def run_summary(self) -> dict[str, Any]:
        """``per_class`` (each class's test IoU), ``class_names`` and ``test_count`` (test images), for
        ``metrics.json``."""
        if self.test_result is None:
            return {}
        return {**segmentation_summary(*self.test_result), "test_count": self.test_count}

    def per_image_result(self) -> dict[str, Any] | None:
        """Each test image's per-class pixel intersection and union (``test_per_image.json``), from which the report
        bootstraps the run's test mIoU over images.  None before a test epoch, and under DDP, where each process
        holds only its own shard of the images (and the sampler's padding repeats some)."""
        if not self._per_image or self.trainer.world_size > 1:
            return None
        counts = torch.cat(self._per_image)  # (images, 2, classes)
        return {"class_names": self.names(), "intersection": counts[:, 0].tolist(), "union": counts[:, 1].tolist()}


def per_image_counts(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, 2, C) int64: for each image and class, pixels predicted *and* labelled as the class (intersection) and
    pixels predicted *or* labelled as it (union), over the labelled pixels only (a target outside the classes, VOC's
    255 ``ignore_index``, counts in neither, as in the mIoU metric).  Summed over images they give the IoU."""
    n = targets.shape[0]
    valid = (targets >= 0) & (targets < num_classes)
    image = torch.arange(n, device=targets.device).view(n, 1, 1).expand_as(targets)
    cells = (image * num_classes + targets.long()) * num_classes + preds.long()
    confusion = torch.bincount(cells[valid], minlength=n * num_classes * num_classes).view(n, num_classes, num_classes)
    intersection = confusion.diagonal(dim1=1, dim2=2)
    union = confusion.sum(dim=1) + confusion.sum(dim=2) - intersection
    return torch.stack([intersection, union], dim=1)
