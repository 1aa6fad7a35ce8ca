"""Real image datasets: the torchvision sets (MNIST, Fashion-MNIST, CIFAR-10) and your own image folders.

Nothing downloads unless the user asks (``data.download=true``): by default the files must already
be under ``data.root``, and a missing copy is one clear sentence before training. MNIST-sized sets
fit in memory as tensors, which keeps the fast batched data path of ``InMemoryDataModule``.

Every split is chosen the same way as for any labelled data (``data/splits.py``): the dataset's own splits where it
has them (the torchvision sets' train and test), a missing one cut off per class by its fraction, then each capped
by ``data.train_size`` / ``val_size`` / ``test_size`` in proportion to the classes (``null``: all).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.data.datamodule import InMemoryDataModule, TensorSplit, standardise
from experiments.data.folder_data import FolderDataModule
from experiments.data.folders import read_image_folder
from experiments.data.image_files import ImageReader
from experiments.data.splits import SPLITS, class_counts, lopsided, plan_splits
from experiments.data.vision_files import DATASETS, present, read_split
from experiments.errors import ConfigError

log = logging.getLogger(__name__)


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not under ``data.root`` and downloading was not requested."""


def _classification_only(task: str) -> None:
    if task != "classification":
        raise ValueError(f"data.task={task} is not available for this dataset; it only has class labels")


def _to_images(data: torch.Tensor | object) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) array/tensor -> float (N, C, H, W) in [0, 1]."""
    images = torch.as_tensor(data)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    return images.float().div_(255)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class TorchvisionDataModule(InMemoryDataModule):
    """MNIST, Fashion-MNIST or CIFAR-10 from a local ``root``: the official test split is the test split, and
    ``val_fraction`` of the official training split (per class) is held out for validation.

    ``val_fraction=0`` trains on every official training image, as He et al. did on CIFAR-10 (the validation loop
    then watches the test split, ``data/datamodule.py``); their 45k/5k split is ``val_fraction=0.1``."""

    def __init__(
        self,
        name: str = "mnist",
        task: str = "classification",
        root: str = "data",
        download: bool = False,
        image_size: int | None = None,
        channels: int | None = None,
        num_classes: int = 10,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        _classification_only(task)
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
        cls_name, native_channels, native_size, classes = DATASETS[name]
        self.class_names = list(classes)  # torchvision's ``classes`` of the set, known before its files are read
        self.name, self.cls_name = name, cls_name
        self.root, self.download = Path(root), download
        self.image_size = image_size or native_size
        self.channels = channels or native_channels
        self.num_classes = num_classes
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.val_fraction = val_fraction
        self.seed = seed
        self.mean: list[float] = []
        self.std: list[float] = []

    def prepare_data(self) -> None:
        """``data.download=true`` only: torchvision fetches the official files into ``root``."""
        if self.download and not present(self.name, self.root):
            import torchvision.datasets as tvd

            for train in (True, False):
                getattr(tvd, self.cls_name)(str(self.root), train=train, download=True)

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.download:
            self.prepare_data()
        try:
            images, labels = read_split(self.name, self.root, train)
        except ConfigError as err:
            raise DatasetMissing(str(err)) from None
        return _to_images(images), torch.as_tensor(labels)

    def build_splits(self) -> dict[str, TensorSplit]:
        (train_x, train_y), (test_x, test_y) = self._read(True), self._read(False)
        parts = {"train": (train_x, train_y), "test": (test_x, test_y)}
        plan = plan_splits({k: y.tolist() for k, (_, y) in parts.items()}, {"val": self.val_fraction}, self.sizes,
                           self.seed)
        for note in plan.notes:
            log.info("data: %s", note)
        chosen = {split: torch.as_tensor(plan.indices[split], dtype=torch.long) for split in SPLITS}
        images = {s: self._adapt(parts[plan.parts[s]][0][chosen[s]]) for s in SPLITS}
        targets = {s: parts[plan.parts[s]][1][chosen[s]].long() for s in SPLITS}
        images, self.mean, self.std = standardise(images)
        return {k: TensorSplit(images[k], targets[k]) for k in SPLITS}

    def _adapt(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and convert channels so any model config written for shapes also runs here."""
        images = _resize(images, self.image_size)
        if images.shape[1] == 1 and self.channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif images.shape[1] == 3 and self.channels == 1:
            images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return images


class ImageFolderDataModule(FolderDataModule):
    """Your own images: ``root/<class>/*.png``, or a folder already split into ``root/train|val|test/<class>/``
    (``data/folders.py``), resized; in memory within ``memory_budget_mb``, else streamed from disk
    (``data/folder_data.py``).

    A folder without its own split is cut per class by ``val_fraction`` / ``test_fraction``, so every class is in
    every split in proportion; a missing ``val/`` or ``test/`` is cut from ``train/`` the same way. Lopsided
    classes (fewer images than splits, or 20x fewer than the largest class) train with one warning line, kept
    in ``data_warnings`` for the run's record. ``num_classes`` None: as many as there are class folders."""

    def __init__(
        self,
        root: str = "data/images",
        task: str = "classification",
        image_size: int = 32,
        channels: int = 3,
        num_classes: int | None = None,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        memory_budget_mb: float | None = 2048,
        stats_images: int = 1000,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, image_size, channels, memory_budget_mb,
                         stats_images, {"train": train_size, "val": val_size, "test": test_size},
                         {"val": val_fraction, "test": test_fraction}, seed)
        _classification_only(task)
        self.root = Path(root)
        self.expected_classes = num_classes
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def reader(self) -> ImageReader:
        return ImageReader(self.image_size, self.channels)

    def list_samples(self) -> dict[str, list]:
        if not self.root.is_dir():
            raise DatasetMissing(f"data.root={self.root} is not a folder; point it at a folder of class sub-folders")
        folder = read_image_folder(self.root)  # the classes and files validation read
        self.class_names = folder.class_names
        if self.expected_classes is not None and self.expected_classes != len(self.class_names):
            raise ConfigError("data.num_classes", self.expected_classes, f"{self.root} has {len(self.class_names)} "
                              "class folders with images", f"set data.num_classes={len(self.class_names)}, or leave "
                              "it out to count them")
        splits = 1 + sum(f > 0 for f in self.fractions.values()) if not folder.presplit else len(SPLITS)
        warning = lopsided(folder.counts(), splits)
        self.data_warnings = [warning] if warning else []
        labels = {part: [label for _, label in samples] for part, samples in folder.parts.items()}
        chosen = self.choose(folder.parts, labels)
        if folder.presplit:
            log.info("data: %s is already split (%s): used as it is", self.root, ", ".join(sorted(folder.parts)))
        for split, samples in chosen.items():
            missing = set(range(len(self.class_names))) - set(class_counts([y for _, y in samples]))
            if missing and samples and split == "train":
                names = ", ".join(self.class_names[k] for k in sorted(missing))
                self.data_warnings.append(f"the training split has no image of the classes {names}")
        return chosen
