"""Your own segmentation data (``data=mask_folder``) and Pascal VOC 2012 (``data=voc``), read from local files.

Both serve ``(images, masks)`` batches like ``data=shapes_seg``: images standardised with the training
split's statistics, masks ``(N, S, S)`` int64 class ids, ``ignore_index`` (255, the VOC convention) on
pixels that no loss or metric counts. Every image is resized to ``data.image_size`` (bilinear), every mask
likewise with nearest neighbour. They load into memory or stream from disk (``data/folder_data.py``).

VOC splits: the official ``val`` list (1449 images) is the *test* split, the number papers report;
``data.val_fraction`` of the official ``train`` list (seeded) is held out for validation and checkpoint
selection, so the test images never choose a checkpoint. Nothing downloads unless ``data.download=true``.
``data.train_size`` / ``val_size`` / ``test_size`` cap each split (``null``: all), as for every dataset
(``data/splits.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.data.folder_data import FolderDataModule
from experiments.data.image_files import PairReader
from experiments.data.segmentation_files import VOC_CLASSES, mask_folder_pairs, voc_pairs


class MaskFolderDataModule(FolderDataModule):
    """``root/images/<stem>.png|jpg`` with ``root/masks/<stem>.png``, split by seeded fractions."""

    task = "segmentation"

    def __init__(
        self,
        root: str = "data/segmentation",
        task: str = "segmentation",
        num_classes: int = 2,
        class_names: Sequence[str] | None = None,
        ignore_index: int | None = 255,
        image_size: int = 64,
        channels: int = 3,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        memory_budget_mb: float | None = 2048,
        stats_images: int = 1000,
        check_files: int = 32,  # read by validation: pairs decoded before training (data/segmentation_files.py)
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, image_size, channels, memory_budget_mb,
                         stats_images, {"train": train_size, "val": val_size, "test": test_size},
                         {"val": val_fraction, "test": test_fraction}, seed)
        if task != "segmentation":
            raise ValueError(f"data.task={task} is not available for this dataset; its targets are masks")
        self.root = Path(root)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names) if class_names else [str(k) for k in range(num_classes)]
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed

    def target_shape(self) -> tuple[int, ...]:
        return (self.image_size, self.image_size)

    def reader(self) -> PairReader:
        return PairReader(self.image_size, self.channels, self.num_classes, self.ignore_index)

    def list_samples(self) -> dict[str, list]:
        return self.choose({"all": mask_folder_pairs(self.root)})


class VOCDataModule(MaskFolderDataModule):
    """Pascal VOC 2012 segmentation from ``root/VOCdevkit/VOC2012``: 21 classes, 255 on object borders."""

    def __init__(
        self,
        root: str = "data",
        task: str = "segmentation",
        download: bool = False,
        num_classes: int = 21,
        ignore_index: int | None = 255,
        image_size: int = 128,
        channels: int = 3,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        memory_budget_mb: float | None = 2048,
        stats_images: int = 1000,
        check_files: int = 32,
    ) -> None:
        super().__init__(root, task, num_classes, VOC_CLASSES[:num_classes], ignore_index, image_size, channels,
                         train_size, val_size, test_size, val_fraction, 0.0, seed, batch_size, eval_batch_size,
                         num_workers, memory_budget_mb, stats_images, check_files)
        self.download = download

    def prepare_data(self) -> None:
        """``data.download=true`` only: torchvision fetches and unpacks VOC 2012 trainval (2 GB) into ``root``."""
        if self.download:
            from torchvision.datasets import VOCSegmentation

            VOCSegmentation(str(self.root), year="2012", image_set="trainval", download=True)

    def list_samples(self) -> dict[str, list]:
        return self.choose({"train": voc_pairs(self.root, "train"), "test": voc_pairs(self.root, "val")})
