"""Lightning data module over the procedural ``shapes`` generator: offline, deterministic, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.data.datamodule import InMemoryDataModule, TensorSplit, standardise
from experiments.data.shapes import DEFAULT_KINDS, render_shapes

TASKS = ("classification", "segmentation")


class ShapesDataModule(InMemoryDataModule):
    """Train/val/test splits of rendered shapes; ``task=segmentation`` serves per-pixel masks as targets.

    Each split has its own generator seed derived from ``seed``, so the splits never share images,
    and the data stay the same when only the training seed changes between repeats of an ablation.
    """

    def __init__(
        self,
        task: str = "classification",
        kinds: Sequence[str] | None = None,
        num_classes: int | None = None,
        image_size: int = 32,
        channels: int = 3,
        train_size: int = 8000,
        val_size: int = 2000,
        test_size: int = 2000,
        seed: int = 0,
        shapes_per_image: Sequence[int] = (1, 1),
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        **render_options: Any,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
        self.task = task
        self.kinds = tuple(kinds) if kinds is not None else tuple(DEFAULT_KINDS)
        expected = len(self.kinds) + (task == "segmentation")
        if num_classes is not None and num_classes != expected:
            raise ValueError(
                f"data.num_classes={num_classes} disagrees with {len(self.kinds)} shape kinds"
                f"{' plus background' if task == 'segmentation' else ''}; it should be {expected}"
            )
        self.num_classes = expected
        self.image_size = image_size
        self.channels = channels
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed
        self.shapes_per_image = tuple(shapes_per_image)
        self.render_options = render_options
        self.mean: list[float] = []
        self.std: list[float] = []

    def build_splits(self) -> dict[str, TensorSplit]:
        images, targets = {}, {}
        for i, (split, n) in enumerate(self.sizes.items()):
            sample = render_shapes(
                n, self.image_size, self.channels, seed=self.seed * 1000 + i, kinds=self.kinds,
                shapes_per_image=self.shapes_per_image, **self.render_options,
            )
            images[split] = sample.images
            targets[split] = sample.labels if self.task == "classification" else sample.masks
        images, self.mean, self.std = standardise(images)
        return {split: TensorSplit(images[split], targets[split]) for split in self.sizes}
