"""Reading one image or mask file as every folder dataset does, each failure one sentence naming the file.

Torch-free (PIL and numpy), so validation can open a sample of the files before anything heavy starts, and
DataLoader workers can read them while streaming. The conventions are those of ``evaluate --predict``
(``run/predict.py``): an image is converted to the run's channel count and resized to ``data.image_size``
with PIL's bilinear filter; a mask is resized with nearest neighbour, so that class ids stay class ids.

A mask holds one class id per pixel: a palette-indexed PNG (mode ``P``: the index is the class, the
palette only colours it, as in Pascal VOC) or a grey-level PNG whose values are the ids (mode ``L``, or
16-bit ``I;16``). Ids at or above ``num_classes`` are errors, except ``ignore_index`` (VOC's 255 borders),
which marks pixels no loss or metric counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from experiments.errors import DataFileError

#: PIL modes whose pixel values are class ids (palette indices, grey levels, 16/32-bit integers, bilevel)
MASK_MODES = ("P", "L", "I;16", "I", "1")


def open_image(path: str | Path) -> Image.Image:
    """The decoded image, or :class:`DataFileError` for a missing, unreadable or truncated file."""
    path = Path(path)
    image = None
    try:
        image = Image.open(path)
        image.load()  # decodes now: a truncated file fails here, not in the middle of a batch
    except FileNotFoundError:
        raise DataFileError(path, "the file does not exist", "restore it, or remove it from the dataset") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:  # PIL's truncated/broken-file errors
        if image is not None:
            image.close()
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataFileError(path, f"it cannot be read as an image ({reason})",
                            "re-export the file, or remove it (and its mask) from the dataset") from None
    return image


def image_array(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """``(C, size, size)`` uint8: converted to grey or RGB, resized bilinearly (as ``run/predict.py`` does)."""
    image = image.convert("RGB" if channels == 3 else "L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy()


def mask_array(mask: Image.Image, path: Path, size: int, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """``(size, size)`` int64 class ids (nearest-neighbour resize); the mode and the ids are checked."""
    if mask.mode not in MASK_MODES:
        raise DataFileError(path, f"it is a {mask.mode} image, not one class id per pixel",
                            "save masks as palette-indexed PNGs or grey-level PNGs whose values are the class ids")
    ids = np.asarray(mask).astype(np.int64)
    values = np.unique(ids)
    bad = values[((values >= num_classes) | (values < 0)) & (values != (-1 if ignore_index is None else ignore_index))]
    if bad.size:
        allowed = f"ids 0-{num_classes - 1}" + (f", {ignore_index} for unlabelled pixels" if ignore_index is not None
                                                 else "")
        raise DataFileError(path, f"it holds class id {int(bad[0])} but data.num_classes={num_classes} ({allowed})",
                            f"fix the mask, or set data.num_classes={int(bad.max()) + 1} if the dataset has that many "
                            "classes")
    if mask.size != (size, size):
        mask = Image.fromarray(ids.astype(np.int32)).resize((size, size), Image.Resampling.NEAREST)
        ids = np.asarray(mask).astype(np.int64)
    return ids


@dataclass(frozen=True)
class ImageReader:
    """``(image path, class label)`` -> ``((C, S, S) uint8, label)``: a picklable reader for DataLoader workers."""

    size: int
    channels: int

    def __call__(self, sample: tuple[Path, int]) -> tuple[np.ndarray, int]:
        path, label = sample
        with open_image(path) as image:
            return image_array(image, self.size, self.channels), int(label)


@dataclass(frozen=True)
class PairReader:
    """``(image path, mask path)`` -> ``((C, S, S) uint8, (S, S) int64)``, both checked: picklable, for workers."""

    size: int
    channels: int
    num_classes: int
    ignore_index: int | None = 255

    def __call__(self, sample: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = Path(sample[0]), Path(sample[1])
        with open_image(image_path) as image, open_image(mask_path) as mask:
            if mask.size != image.size:
                (w, h), (iw, ih) = mask.size, image.size
                raise DataFileError(mask_path, f"it is {w}x{h} pixels but its image {image_path.name} is {iw}x{ih}",
                                    "save the mask at its image's size (one class id per image pixel)")
            return (image_array(image, self.size, self.channels),
                    mask_array(mask, mask_path, self.size, self.num_classes, self.ignore_index))
