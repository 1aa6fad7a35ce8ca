"""Datasets read from files (image folders, mask folders, Pascal VOC): in memory when they fit, else streamed.

Why both: holding a split as tensors serves a batch as one indexing op (``TensorSplit``), the fast path
for everything that fits; a dataset larger than ``data.memory_budget_mb`` (as float32 images plus
targets) instead streams from disk, each batch read by DataLoader workers (``data.num_workers``) from
the files. Either way the batches are the same tensors, bit for bit:

* the training order is the same seeded, resumable sampler (``data/sampling.py``), so exact resume and
  the ``augment`` group (applied to the batch on the device) work alike;
* the per-channel mean/std come from the same ``data.stats_images`` evenly spaced training images,
  accumulated in float64 image by image in the same order, and each pixel is standardised by the same
  elementwise ``(x - mean) / std``.

The choice is logged (``train.log``); streaming always reads in worker processes (at least one), in-memory
splits are then placed like any other (``data/placement.py``: on the GPU when they fit). A bad file is one
sentence naming it (``errors.DataFileError``): at setup when loading into memory, at the batch that reads it
when streaming (``run/bad_data.py`` then checkpoints the batches before it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from experiments.data.datamodule import InMemoryDataModule, TensorSplit, keep_batch
from experiments.data.placement import WORKERS, Placement
from experiments.data.segmentation_files import evenly_spaced
from experiments.data.splits import SPLITS, plan_splits

log = logging.getLogger(__name__)

#: items read per DataLoader batch while loading a split into memory or gathering statistics
LOAD_BATCH = 64


def _stack(items: Sequence[tuple[np.ndarray, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reader outputs -> (uint8 images (N, C, S, S), int64 targets: labels (N,) or masks (N, S, S))."""
    images = torch.from_numpy(np.stack([image for image, _ in items]))
    targets = torch.as_tensor(np.stack([np.asarray(target) for _, target in items]), dtype=torch.long)
    return images, targets


class FileSplit(Dataset):
    """A split read from its files on demand; ``__getitems__`` returns a standardised batch, like ``TensorSplit``."""

    def __init__(self, samples: Sequence[Any], reader: Callable[[Any], tuple[np.ndarray, Any]],
                 mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> None:
        self.samples, self.reader = list(samples), reader
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.samples)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = _stack([self.reader(self.samples[i]) for i in indices])
        images = images.float().div_(255)
        if self.mean is not None and self.std is not None:
            images = (images - self.mean) / self.std
        return images, targets

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.__getitems__([index])
        return images[0], targets[0]


def channel_stats(images: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std, ``(1, C, 1, 1)`` float32, of (C, H, W) images in [0, 1].

    Accumulated in float64 one image at a time, so the result depends on the images and their order
    only, not on how they were batched or whether they came from memory or disk."""
    total = squares = None
    count = 0
    for image in images:
        pixels = image.double()
        s, q = pixels.sum(dim=(1, 2)), pixels.square().sum(dim=(1, 2))
        total, squares = (s, q) if total is None else (total + s, squares + q)
        count += pixels.shape[1] * pixels.shape[2]
    if total is None:
        raise ValueError("no training images to take statistics from")
    mean = total / count
    var = (squares - count * mean.square()) / max(count - 1, 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)


class FolderDataModule(InMemoryDataModule):
    """Base for file datasets: a subclass lists each split's samples and names the reader of one sample.

    ``num_workers`` read the files: at setup when loading into memory (batches are then served from memory
    without workers), and for every batch when streaming."""

    def __init__(self, batch_size: int, eval_batch_size: int | None, num_workers: int, image_size: int,
                 channels: int, memory_budget_mb: float | None, stats_images: int,
                 sizes: dict[str, int | None] | None = None, fractions: dict[str, float] | None = None,
                 seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.sizes = dict(sizes or {})  # caps per split (None: all), data/splits.py
        self.fractions = dict(fractions or {})  # val/test fractions where the data has no split of its own
        self.seed = seed
        self.file_workers = num_workers
        self.image_size, self.channels = image_size, channels
        self.memory_budget_mb, self.stats_images = memory_budget_mb, stats_images
        self.streaming = False
        self.data_mb = 0.0
        self.mean: list[float] = []
        self.std: list[float] = []

    def list_samples(self) -> dict[str, list[Any]]:
        """``{"train": [...], "val": [...], "test": [...]}``: what the reader reads (paths and labels)."""
        raise NotImplementedError

    def choose(self, parts: dict[str, list[Any]], labels: dict[str, list[int]] | None = None) -> dict[str, list[Any]]:
        """The samples of each split from the dataset's parts (``"all"``, or its own ``"train"``/``"val"``/``"test"``):
        cut by the fractions per class, then capped by the sizes (``data/splits.py``); caps above the data are said
        once in the log. ``labels`` None: unlabelled (segmentation), cut as one class."""
        labels = labels or {part: [0] * len(samples) for part, samples in parts.items()}
        plan = plan_splits(labels, self.fractions, self.sizes, self.seed)
        for note in plan.notes:
            log.info("data: %s", note)
        return {split: [parts[plan.parts[split]][i] for i in plan.indices[split]] for split in SPLITS}

    def reader(self) -> Callable[[Any], tuple[np.ndarray, Any]]:
        """A picklable callable: one sample -> (uint8 (C, S, S) image, target)."""
        raise NotImplementedError

    def target_shape(self) -> tuple[int, ...]:
        """One target's shape: ``()`` for a class label; segmentation modules return their mask's ``(S, S)``."""
        return ()

    def sample_bytes(self) -> int:
        """Memory one sample takes in memory: a float32 image plus its int64 target."""
        return 4 * self.channels * self.image_size**2 + 8 * int(np.prod(self.target_shape()))

    def _read_all(self, samples: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every sample, read by the workers: float images in [0, 1] and targets (empty tensors for no samples)."""
        loader = DataLoader(FileSplit(samples, self.reader()), batch_size=LOAD_BATCH, num_workers=self.file_workers,
                            collate_fn=keep_batch)
        parts = list(loader)
        if not parts:
            size = self.image_size
            return torch.empty(0, self.channels, size, size), torch.empty(0, *self.target_shape(), dtype=torch.long)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def build_splits(self) -> dict[str, Dataset]:
        samples = self.list_samples()
        total = sum(len(s) for s in samples.values())
        self.data_mb = need_mb = total * self.sample_bytes() / 2**20
        budget = self.memory_budget_mb
        self.streaming = budget is not None and need_mb > budget
        stats_at = evenly_spaced(self.stats_images, len(samples["train"]))
        where = f"{total} images ({need_mb:.1f} MiB as tensors) against data.memory_budget_mb={budget}"
        if self.streaming:
            self.num_workers = max(1, self.file_workers)  # the batches' files are read in worker processes
            log.info("%s: streaming from disk, read by %d DataLoader workers", where, self.num_workers)
            images, _ = self._read_all([samples["train"][i] for i in stats_at])
            mean, std = channel_stats(images)
            splits: dict[str, Dataset] = {k: FileSplit(v, self.reader(), mean, std) for k, v in samples.items()}
        else:
            log.info("%s: loading into memory", where)
            loaded = {k: self._read_all(v) for k, v in samples.items()}
            mean, std = channel_stats(loaded["train"][0][i] for i in stats_at)
            splits = {k: TensorSplit((images - mean) / std, targets) for k, (images, targets) in loaded.items()}
            self.num_workers = 0  # batches are one indexing op from here: workers would only add pickling
        self.mean, self.std = mean.flatten().tolist(), std.flatten().tolist()
        return splits

    def place(self, device: torch.device | str) -> Placement:
        """Streamed files are read by DataLoader workers wherever the model trains, never held on a device
        (``data/placement.py`` places in-memory splits only)."""
        self.setup()
        if not self.streaming:
            return super().place(device)
        self.placement = Placement(WORKERS, str(torch.device(device)), self.data_mb, None,
                                   f"over data.memory_budget_mb={self.memory_budget_mb}: files read by "
                                   f"{self.num_workers} workers")
        self.served = dict(self.splits)  # the loaders read the file splits as they are
        return self.placement
