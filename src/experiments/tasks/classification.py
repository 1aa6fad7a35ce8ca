"""Image classification: one label per image, accuracy as the headline metric.

The test split also fills a confusion matrix (the same batches, no extra pass): per-class accuracy and which
class is mistaken for which, by the data's class names, go to ``metrics.json`` (:meth:`run_summary`, merged by
``RunRecord``) and as a figure to every image logger and ``<run dir>/figures/confusion_matrix.png``. On the same
batches it measures calibration (``tasks/calibration.py``): the expected calibration error, 15 equal-width
confidence bins, l1 norm (torchmetrics ``MulticlassCalibrationError``), logged as ``test/ece`` beside ``test/acc``,
and the reliability diagram, drawn like the confusion matrix as ``<run dir>/figures/reliability.png``. Both keep
the test epoch's cost tiny: a softmax and a max per batch, one top-1 confidence and hit stored per image.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassConfusionMatrix
from torchmetrics.utilities import dim_zero_cat

from experiments.analysis.per_class import (
    classification_summary,
    confusion_figure,
    confusion_figure_path,
    data_class_names,
)
from experiments.specs import TASKS
from experiments.tasks.base import OptimizerFactory, SchedulerFactory, Task
from experiments.tasks.calibration import (
    N_BINS,
    NORM,
    RELIABILITY_TAG,
    ReliabilityBins,
    reliability_bins,
    reliability_figure,
    reliability_figure_path,
)

#: the figure's TensorBoard tag
CONFUSION_TAG = "test/confusion_matrix"
#: the test split's expected calibration error, a metric of metrics.json like ``test/acc``
ECE_METRIC = "test/ece"


class ClassificationTask(Task):
    monitor = TASKS["classification"].monitor
    monitor_mode = TASKS["classification"].mode
    #: draw the test split's figures (confusion matrix, reliability diagram) into the loggers and the run dir;
    #: ``evaluate`` (no loggers, not in the run dir) turns it off and draws its own under its own name
    log_confusion_figure: bool = True

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
        # validate_args=False: as for accuracy, the check would wait for the GPU every step
        self.test_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        #: the last test split's names and matrix (rows = true class); None until a test epoch ends
        self.test_result: tuple[list[str], list[list[int]]] | None = None
        # the ECE of the test split (Guo et al. 2017's 15 bins, l1); fed probabilities so that torchmetrics never
        # guesses whether they are logits
        self.test_calibration = MulticlassCalibrationError(num_classes, n_bins=N_BINS, norm=NORM,
                                                           validate_args=False)
        #: the last test split's reliability bins; None until a test epoch ends
        self.test_reliability: ReliabilityBins | None = None

    def build_metrics(self) -> MetricCollection:
        # validate_args=False: the check counts the target's distinct values, which waits for the GPU every step
        return MetricCollection({"acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)})

    def class_names(self) -> list[str]:
        """The data module's names for the classes (folders, torchvision's ``classes``, shape kinds), else
        ``class_<i>``."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return data_class_names(datamodule, self.num_classes)

    def after_step(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, split: str) -> None:
        if split == "test":
            self.test_confusion.update(logits.detach(), y)
            self.test_calibration.update(logits.detach().float().softmax(dim=1), y)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self.test_calibration.reset()

    def on_test_epoch_end(self) -> None:
        matrix = self.test_confusion.compute()  # summed over DDP ranks by torchmetrics
        self.test_confusion.reset()
        self.test_result = (self.class_names(), matrix.long().tolist())
        self.test_reliability, ece = None, None
        if self.test_calibration.confidences:  # a test split with no batch has no calibration
            ece = self.test_calibration.compute()  # over every rank's images; equal on all ranks
            with self.test_calibration.sync_context():  # every rank's confidences, for the diagram
                confidence = dim_zero_cat(self.test_calibration.confidences)
                correct = dim_zero_cat(self.test_calibration.accuracies)
            self.test_reliability = reliability_bins(confidence, correct, N_BINS)
            self.log(ECE_METRIC, ece, sync_dist=True)  # the same value on every rank: the mean leaves it as it is
        self.test_calibration.reset()
        if self.log_confusion_figure and self.trainer.is_global_zero:
            self._log_figure(*self.test_result)
            if self.test_reliability is not None and ece is not None:
                self._log_reliability(self.test_reliability, float(ece))

    def _log_figure(self, names: list[str], matrix: list[list[int]]) -> None:
        """The figure to every image logger, and once (not per step: the test split is tested once) as
        ``<run dir>/figures/confusion_matrix.png``."""
        from experiments.diagnostics.sinks import log_image, render_figure

        logged = log_image(self.trainer, CONFUSION_TAG, render_figure(confusion_figure(names, matrix)),
                           self.global_step)
        if logged is not None:  # the sink's per-step copy takes the figure's fixed name
            logged.replace(confusion_figure_path(self.trainer.default_root_dir))
            with suppress(OSError):
                logged.parent.rmdir()

    def _log_reliability(self, bins: ReliabilityBins, ece: float) -> None:
        """The reliability diagram to every image logger and as ``<run dir>/figures/reliability.png``."""
        from experiments.diagnostics.sinks import log_image, render_figure

        logged = log_image(self.trainer, RELIABILITY_TAG, render_figure(reliability_figure(bins, ece)),
                           self.global_step)
        if logged is not None:
            logged.replace(reliability_figure_path(self.trainer.default_root_dir))
            with suppress(OSError):
                logged.parent.rmdir()

    def run_summary(self) -> dict[str, Any]:
        """``per_class``, ``confusion_matrix``, ``class_names`` and ``test_count`` (the matrix's total: the images
        the test accuracy is a proportion of, which the report's Wilson interval needs) of the last test split, for
        ``metrics.json``."""
        if self.test_result is None:
            return {}
        names, matrix = self.test_result
        return {**classification_summary(names, matrix), "test_count": int(sum(map(sum, matrix)))}
