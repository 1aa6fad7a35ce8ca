"""What every task shares: the network, the loss, the optimiser and the per-step LR schedule."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection

from experiments.tasks import schedules

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]


class Task(L.LightningModule):
    """Base LightningModule; subclasses say which metrics to track and which one picks the best checkpoint."""

    #: metric that selects the best checkpoint, and whether larger is better
    monitor: str = "val/loss"
    monitor_mode: str = "min"
    #: a compiled view of ``network`` (``trainer.compile``, set by experiments.speed.compile); None: eager
    compiled: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __init__(
        self,
        network: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        #: the checkpoint ``fit`` restores (seen in on_load_checkpoint, before configure_optimizers), so that a
        #: schedule built for another length is continued rather than restored as is (tasks/schedules.py)
        self._restoring: dict[str, Any] | None = None
        #: the schedule's name and length, saved with every checkpoint
        self._schedule_record: dict[str, Any] | None = None
        metrics = self.build_metrics()
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def build_metrics(self) -> MetricCollection:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) if self.compiled is None else self.compiled(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        training = split == "train"
        # sync_dist: under DDP every logged mean is over all ranks (a no-op on one device); torchmetrics sync
        # themselves. Not on the progress bar while training: Lightning turns a step value shown there into a float
        # after every batch, which waits for the GPU each step; the step value is logged every log_every_n_steps.
        self.log(f"{split}/loss", loss, on_step=training, on_epoch=True, prog_bar=not training, sync_dist=True)
        metrics = getattr(self, f"{split}_metrics")
        metrics.update(logits.detach(), y)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=split == "val")
        self.after_step(x, y, logits, split)
        return loss

    def loss_target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What ``loss_fn(network(x), ·)`` compares the output with: the labels (or masks) here; a task that
        reconstructs its input says otherwise. Lets code outside the task (the loss landscape) evaluate its loss."""
        return y

    def after_step(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, split: str) -> None:
        """Hook for task-specific extras (e.g. logging sample predictions)."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=1)

    def configure_optimizers(self) -> Any:
        """The optimiser and its per-step schedule over the run's length; when ``fit`` continues a checkpoint whose
        schedule was built for another length (a finished run extended with more epochs), the schedule continues
        from the checkpoint's rate instead, and one line says how (``schedules.build``)."""
        optimizer = self.optimizer_factory(self.parameters())
        restoring, self._restoring = self._restoring, None
        scheduler, self._schedule_record, note = schedules.build(
            self.scheduler_factory, optimizer, int(self.trainer.estimated_stepping_batches), restoring)
        if note is not None and self.trainer.is_global_zero:
            print(note, file=sys.stderr, flush=True)
            log.info(note)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # the rates this step trains with: a checkpoint taken after a schedule's last step holds the rate one step
        # past its end (0 for a cosine to eta_min=0), so an extension starts from these instead
        if self._schedule_record is not None and self.trainer.optimizers:
            self._schedule_record["last_lrs"] = [float(g["lr"]) for g in self.trainer.optimizers[0].param_groups]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restoring = checkpoint  # Lightning restores the optimiser and schedule from it after configure_optimizers

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._schedule_record is not None:
            checkpoint[schedules.RECORD_KEY] = dict(self._schedule_record)
