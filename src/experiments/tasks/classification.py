"""Image classification: one label per image, accuracy as the headline metric."""

from __future__ import annotations

from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from experiments.tasks.base import OptimizerFactory, SchedulerFactory, Task


class ClassificationTask(Task):
    monitor = "val/acc"
    monitor_mode = "max"

    def __init__(
        self,
        network: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        self.num_classes = num_classes
        super().__init__(network, loss, optimizer, scheduler)

    def build_metrics(self) -> MetricCollection:
        # validate_args=False: the check counts the target's distinct values, which waits for the GPU every step
        return MetricCollection({"acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)})
