"""Data modules that keep whole splits as tensors in memory and serve batches by fancy indexing.

The procedural datasets are small enough to live in memory; serving a batch as one indexing op
instead of collating per-sample items keeps the data path far below the model's step time, which is
how a Lightning run stays as fast as a hand-written loop on a 2-core CPU. On a GPU the splits move
there once when they fit ``trainer.device_data_gb`` and batches are indexed on the device, else they
stream from pinned host memory (``data/placement.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from experiments.data.placement import (
    RESIDENT,
    WORKERS,
    DeviceLoader,
    Placement,
    ResumableDeviceLoader,
    choose_placement,
    free_device_memory,
    split_bytes,
)
from experiments.data.sampling import EpochShuffleSampler, ResumableLoader

if TYPE_CHECKING:
    from experiments.data.augment import BatchAugment

log = logging.getLogger(__name__)


class TensorSplit(Dataset):
    """A split held as aligned tensors; ``__getitems__`` returns a whole batch in one indexing op."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorSplit needs tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices)
        return tuple(t[idx] for t in self.tensors)


def keep_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Collate function for ``TensorSplit``: the batch is already stacked (module-level so it pickles)."""
    return batch


class InMemoryDataModule(L.LightningDataModule):
    """Base for data modules whose ``build_splits`` returns (train, val, test) ``TensorSplit``s."""

    task: str = "classification"
    #: the ``augment`` group (data/augment.py), set by ``build.build_datamodule``; None: no augmentation
    augment: BatchAugment | None = None
    #: bytes of data allowed on an accelerator (``trainer.device_data_gb``), set by ``build.build_datamodule``
    device_budget_bytes: int = 4 * 1024**3
    #: where the splits are served from (data/placement.py), decided when the first loader is built
    placement: Placement | None = None
    #: what the run records about its data (``metrics.json``): the name of each class id (folder names, torchvision's
    #: ``classes``, shape kinds), each split's size once built, and the one-line warnings about lopsided classes
    class_names: list[str] = []
    split_sizes: dict[str, int] = {}
    data_warnings: list[str] = []

    def __init__(self, batch_size: int = 128, eval_batch_size: int | None = None, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.splits: dict[str, TensorSplit] = {}
        self.served: dict[str, TensorSplit] = {}  # the splits where the loaders read them (see place)
        self.class_names, self.split_sizes, self.data_warnings = [], {}, []

    def build_splits(self) -> dict[str, TensorSplit]:
        raise NotImplementedError

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches where they now are (GPU or CPU), whatever loader produced them."""
        return self.augment.training_batch(self.trainer, batch) if self.augment is not None else batch

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            splits = self.build_splits()
            self.split_sizes = {name: len(split) for name, split in splits.items()}
            if not len(splits["val"]):
                # val_size=0 (He et al. trained on all 50k CIFAR images): curves are drawn on the test split;
                # validation refuses to let them choose a checkpoint (validation/data.py)
                log.info("data: no validation images (data.val_size=0): the validation loop runs on the test split")
                splits["val"] = splits["test"]
            self.splits = splits
            for warning in self.data_warnings:
                log.warning("data: %s", warning)

    def place(self, device: torch.device | str) -> Placement:
        """Decide once per device where the splits are served from (data/placement.py), move them there if they
        are to be resident, and log the choice."""
        self.setup()
        device = torch.device(device)
        if self.placement is None or self.placement.device != str(device):
            nbytes = split_bytes(self.splits)
            self.placement = choose_placement(device, nbytes, self.device_budget_bytes, self.num_workers,
                                              free_device_memory(device))
            resident = self.placement.mode == RESIDENT and device.type != "cpu"
            self.served = {name: TensorSplit(*(t.to(device) for t in split.tensors)) if resident else split
                            for name, split in self.splits.items()}
            log.info("data: %s", self.placement.describe())
        return self.placement

    def _device(self) -> torch.device:
        """Where the trainer computes (each DDP process: its own device); the CPU without a trainer."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        device = self._device()
        placement = self.place(device)
        data = self.served[split]
        workers = placement.mode == WORKERS
        if workers:
            options: dict = {"collate_fn": keep_batch, "num_workers": self.num_workers, "persistent_workers": True,
                             "pin_memory": device.type == "cuda"}
        else:
            options = {"device": device}
        if not shuffle:
            loader = DataLoader if workers else DeviceLoader
            return loader(data, batch_size=self.eval_batch_size, shuffle=False, **options)
        # Training order depends on (seed, epoch) only, is sharded per DDP process here (so Lightning keeps it),
        # and restarts mid-epoch from a checkpoint: see data/sampling.py. The seed is the run's (seed_everything).
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        sampler = EpochShuffleSampler(data, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)), num_replicas=world,
                                      rank=rank)
        loader = ResumableLoader if workers else ResumableDeviceLoader
        return loader(data, batch_size=self.batch_size, sampler=sampler, drop_last=len(sampler) > self.batch_size,
                      **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def standardise(splits: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[float], list[float]]:
    """Normalise every split's images with the per-channel mean/std of the training split."""
    train = splits["train"]
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    out = {name: (images - mean) / std for name, images in splits.items()}
    return out, mean.flatten().tolist(), std.flatten().tolist()
