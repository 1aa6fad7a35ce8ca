"""A tiny LightningModule and Trainer for callback tests that need real hooks but not the whole framework."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyTask(L.LightningModule):
    """``network`` + cross-entropy + plain SGD: gradients are exactly what the test computes by hand."""

    def __init__(self, network: nn.Module, lr: float = 0.1) -> None:
        super().__init__()
        self.network = network
        self.lr = lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.network(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def batches(shape: Sequence[int] = (16, 1, 8, 8), classes: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=g), torch.randint(0, classes, (shape[0],), generator=g)


def fit(task: L.LightningModule, callbacks: list, data: tuple[torch.Tensor, torch.Tensor], steps: int,
        log_dir: Path | None = None) -> L.Trainer:
    """Fit ``steps`` optimiser steps over ``data`` as one full batch (no shuffling), optionally with TensorBoard."""
    loader = DataLoader(TensorDataset(*data), batch_size=len(data[0]), shuffle=False)
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, callbacks=callbacks,
        logger=TensorBoardLogger(str(log_dir), name="", version="") if log_dir else False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, log_every_n_steps=1,
        default_root_dir=str(log_dir) if log_dir else tempfile.mkdtemp(prefix="tiny-fit-"),  # figures/ PNGs go here
    )
    trainer.fit(task, train_dataloaders=loader)
    return trainer
