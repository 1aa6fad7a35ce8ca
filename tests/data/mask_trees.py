"""Small segmentation datasets written as files, in the layouts ``data=mask_folder`` and ``data=voc`` read.

Each image is a dark background (class 0) with a red square (class 1) and a green square (class 2) at seeded
places; the mask outlines each square with 255 (unlabelled, as Pascal VOC outlines its objects), so a model can
learn the classes from colour alone and the ignored pixels are known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {1: (220, 40, 40), 2: (40, 200, 60)}
#: a few of Pascal VOC's palette colours (index -> RGB); any palette works, only the indices are class ids
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (3 * 251) + [224, 224, 192]


def scene(index: int, size: int = 20, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) uint8 mask with 255 outlines."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    for k in range(1, classes):
        side = int(rng.integers(size // 4, size // 2))
        top, left = (int(v) for v in rng.integers(0, size - side, 2))
        image[top:top + side, left:left + side] = COLOURS.get(k, (40, 40, 200))
        mask[top:top + side, left:left + side] = 255
        mask[top + 1:top + side - 1, left + 1:left + side - 1] = k
    return image, mask


def save_mask(mask: np.ndarray, path: Path, mode: str = "P") -> None:
    """A palette-indexed PNG (``P``: indices are the ids) or a grey-level one (``L``: values are the ids)."""
    image = Image.fromarray(mask)
    if mode == "P":
        image = image.convert("P")
        image.putpalette(VOC_PALETTE)
    image.save(path)


def write_mask_folder(root: Path, n: int = 24, size: int = 20, image_suffix: str = ".png",
                      mask_mode: str = "P") -> Path:
    """``root/images/<i>.<suffix>`` and ``root/masks/<i>.png``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = scene(i, size)
        Image.fromarray(image).save(root / "images" / f"{i:03d}{image_suffix}", quality=95)
        save_mask(mask, root / "masks" / f"{i:03d}.png", mask_mode)
    return root


def write_voc(root: Path, train: int = 12, val: int = 6, size: int = 20) -> Path:
    """``root/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val}.txt}``."""
    base = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True)
    ids = {"train": [f"2007_{i:06d}" for i in range(train)], "val": [f"2008_{i:06d}" for i in range(val)]}
    for split, names in ids.items():
        for i, name in enumerate(names):
            image, mask = scene(i + 1000 * (split == "val"), size)
            Image.fromarray(image).save(base / "JPEGImages" / f"{name}.jpg", quality=95)
            save_mask(mask, base / "SegmentationClass" / f"{name}.png")
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def truncate(path: Path, keep: float = 0.5) -> bytes:
    """Cut ``path`` to a fraction of its bytes (a half-copied file); returns the original bytes to restore it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return data
