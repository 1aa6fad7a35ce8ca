"""What every task shares: the network, the loss, the optimiser and the per-step LR schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection

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
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
