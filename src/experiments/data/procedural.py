"""Lightning data module over the procedural ``shapes`` generator: offline, deterministic, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from experiments.data.datamodule import InMemoryDataModule, TensorSplit, standardise
from experiments.data.shapes import DEFAULT_KINDS, render_shapes

TASKS = ("classification", "segmentation")
#: the sizes ``null`` stands for (``data.train_size=null`` ...): the documented defaults of conf/data/shapes*.yaml
DEFAULT_SIZES = {"classification": {"train": 8000, "val": 2000, "test": 2000},
                 "segmentation": {"train": 3000, "val": 500, "test": 500}}


class ShapesDataModule(InMemoryDataModule):
    """Train/val/test splits of rendered shapes; ``task=segmentation`` serves per-pixel masks as targets.

    ``train_size`` / ``val_size`` / ``test_size``: images generated per split (``None``: :data:`DEFAULT_SIZES`).
    Each split has its own generator seed derived from ``seed``, so the splits never share images,
    and the data stay the same when only the training seed changes between repeats of an ablation.

    ``test_shift`` and ``test_noise`` perturb the test split alone (:func:`perturb`), so a trained run can be
    re-tested on shifted or noisier images with the training split, and so the standardisation, unchanged:
    ``python -m experiments.evaluate RUN data.test_shift=4`` asks how invariant its pooling made it.
    """

    def __init__(
        self,
        task: str = "classification",
        kinds: Sequence[str] | None = None,
        num_classes: int | None = None,
        image_size: int = 32,
        channels: int = 3,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
        shapes_per_image: Sequence[int] = (1, 1),
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        test_shift: int = 0,
        test_noise: float = 0.0,
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
        asked = {"train": train_size, "val": val_size, "test": test_size}
        self.sizes = {split: DEFAULT_SIZES[task][split] if n is None else int(n) for split, n in asked.items()}
        # class k is kinds[k]; for segmentation, mask id 0 is the background and id 1 + k is kinds[k]
        self.class_names = (["background"] if task == "segmentation" else []) + list(self.kinds)
        self.seed = seed
        self.shapes_per_image = tuple(shapes_per_image)
        self.render_options = render_options
        self.test_shift, self.test_noise = int(test_shift), float(test_noise)
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
        if self.test_shift or self.test_noise:
            images["test"], masks = perturb(images["test"], None if self.task == "classification" else targets["test"],
                                            self.test_shift, self.test_noise, seed=self.seed * 1000 + len(self.sizes))
            targets["test"] = targets["test"] if masks is None else masks
        images, self.mean, self.std = standardise(images)
        return {split: TensorSplit(images[split], targets[split]) for split in self.sizes}


def perturb(
    images: torch.Tensor, masks: torch.Tensor | None, shift: int, noise: float, seed: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images (N, C, H, W) in [0, 1] moved by ``shift`` pixels along each axis, then given Gaussian noise of std
    ``noise`` (clipped back to [0, 1], as rendered images are); masks (N, H, W), if any, move with their images.

    Each image moves up or down and left or right (one of the four diagonals, drawn per image from ``seed``),
    so no direction is favoured; the pixels that enter at an edge repeat the edge, which is mostly background here.
    """
    generator = torch.Generator().manual_seed(int(seed))
    n, _, height, width = images.shape
    if shift:
        signs = torch.randint(0, 2, (2, n), generator=generator) * 2 - 1  # (dy, dx) per image: -1 or +1
        rows = (torch.arange(height) - shift * signs[0, :, None]).clamp_(0, height - 1)  # (N, H): source row
        cols = (torch.arange(width) - shift * signs[1, :, None]).clamp_(0, width - 1)  # (N, W): source column
        images = images.gather(2, rows[:, None, :, None].expand_as(images))
        images = images.gather(3, cols[:, None, None, :].expand_as(images))
        if masks is not None:
            masks = masks.gather(1, rows[:, :, None].expand_as(masks)).gather(2, cols[:, None, :].expand_as(masks))
    if noise:
        images = (images + noise * torch.randn(images.shape, generator=generator)).clamp_(0.0, 1.0)
    return images, masks
