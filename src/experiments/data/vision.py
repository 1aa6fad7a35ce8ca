"""Real image datasets through torchvision, held in memory like the procedural ones.

Nothing downloads unless the user asks (``data.download=true``): by default the files must already
be under ``data.root``, and a missing copy is one clear sentence before training. MNIST-sized sets
fit in memory as tensors, which keeps the fast batched data path of ``InMemoryDataModule``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.data.datamodule import InMemoryDataModule, TensorSplit, standardise
from experiments.data.folder_data import FolderDataModule, fraction_split
from experiments.data.folders import IMAGE_SUFFIXES, class_folders
from experiments.data.image_files import ImageReader

#: name -> (torchvision class, channels, native image size, class names)
DATASETS = {
    "mnist": ("MNIST", 1, 28, [str(i) for i in range(10)]),
    "fashion_mnist": (
        "FashionMNIST", 1, 28,
        ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"],
    ),
    "cifar10": (
        "CIFAR10", 3, 32, ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    ),
}


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


def _split_off(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation split of n training items into (train, val) indices."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


class TorchvisionDataModule(InMemoryDataModule):
    """MNIST, Fashion-MNIST or CIFAR-10 from a local ``root``; the validation split is carved from train."""

    def __init__(
        self,
        name: str = "mnist",
        task: str = "classification",
        root: str = "data",
        download: bool = False,
        image_size: int | None = None,
        channels: int | None = None,
        num_classes: int = 10,
        val_size: int = 5000,
        train_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        _classification_only(task)
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
        cls_name, native_channels, native_size, self.class_names = DATASETS[name]
        self.name, self.cls_name = name, cls_name
        self.root, self.download = Path(root), download
        self.image_size = image_size or native_size
        self.channels = channels or native_channels
        self.num_classes = num_classes
        self.val_size, self.train_size, self.test_size = val_size, train_size, test_size
        self.seed = seed
        self.mean: list[float] = []
        self.std: list[float] = []

    def _load(self, train: bool):
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.cls_name)
        try:
            return cls(str(self.root), train=train, download=self.download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted. You can use download=True"
            raise DatasetMissing(
                f"data.root={self.root} holds no {self.cls_name} files; point data.root at a copy or "
                f"set data.download=true to fetch it ({err})"
            ) from None

    def build_splits(self) -> dict[str, TensorSplit]:
        train_set, test_set = self._load(True), self._load(False)
        train_x, train_y = _to_images(train_set.data), torch.as_tensor(train_set.targets)
        test_x, test_y = _to_images(test_set.data), torch.as_tensor(test_set.targets)
        train_idx, val_idx = _split_off(len(train_x), self.val_size, self.seed)
        if self.train_size:
            train_idx = train_idx[: self.train_size]
        test_idx = torch.arange(min(len(test_x), self.test_size or len(test_x)))
        images = {"train": train_x[train_idx], "val": train_x[val_idx], "test": test_x[test_idx]}
        targets = {"train": train_y[train_idx], "val": train_y[val_idx], "test": test_y[test_idx]}
        images = {k: self._adapt(v) for k, v in images.items()}
        images, self.mean, self.std = standardise(images)
        return {k: TensorSplit(images[k], targets[k].long()) for k in images}

    def _adapt(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and convert channels so any model config written for shapes also runs here."""
        images = _resize(images, self.image_size)
        if images.shape[1] == 1 and self.channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif images.shape[1] == 3 and self.channels == 1:
            images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return images


class ImageFolderDataModule(FolderDataModule):
    """A folder of class sub-folders (``root/<class>/*.png``), resized and split by seeded fractions; in memory
    within ``memory_budget_mb``, else streamed from disk (``data/folder_data.py``).

    ``num_classes`` None: as many classes as :func:`~experiments.data.folders.class_folders` finds."""

    def __init__(
        self,
        root: str = "data/images",
        task: str = "classification",
        image_size: int = 32,
        channels: int = 3,
        num_classes: int | None = None,
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
                         stats_images)
        _classification_only(task)
        self.root = Path(root)
        self.expected_classes = num_classes
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.seed = seed
        self.class_names: list[str] = []

    def reader(self) -> ImageReader:
        return ImageReader(self.image_size, self.channels)

    def list_samples(self) -> dict[str, list]:
        from torchvision.datasets.folder import make_dataset

        if not self.root.is_dir():
            raise DatasetMissing(f"data.root={self.root} is not a folder; point it at a folder of class sub-folders")
        self.class_names = class_folders(self.root, self.expected_classes)  # the classes validation counted
        samples = make_dataset(str(self.root), {name: k for k, name in enumerate(self.class_names)}, IMAGE_SUFFIXES)
        parts = fraction_split(len(samples), self.val_fraction, self.test_fraction, self.seed)
        return {split: [samples[i] for i in indices] for split, indices in parts.items()}
