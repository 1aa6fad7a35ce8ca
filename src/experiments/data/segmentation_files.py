"""Which files form a segmentation dataset (``data=mask_folder``, ``data=voc``), and a sampled check of them.

Torch-free, so validation answers before training: the layout (folders, list files, an image without its
mask) is checked in full because listing costs nothing, and the pixels of an evenly spaced sample of pairs
(``data.check_files`` of them: readable, mask the size of its image, class ids below ``num_classes``) because
decoding every file of a large dataset would cost an epoch. The data module reads every file again and
raises the same sentences for the ones the sample missed: at setup when the data fit in memory, at the batch
when they stream from disk.

* ``mask_folder``: ``root/images/<stem>.png|jpg`` and ``root/masks/<stem>.png``, matched by file stem.
* ``voc``: Pascal VOC 2012 under ``root/VOCdevkit/VOC2012``: ``JPEGImages/<id>.jpg``,
  ``SegmentationClass/<id>.png`` (palette-indexed, 255 on object borders) and the id lists
  ``ImageSets/Segmentation/{train,val}.txt``.
"""

from __future__ import annotations

from pathlib import Path

from experiments.data.folders import IMAGE_SUFFIXES
from experiments.data.image_files import PairReader
from experiments.errors import ConfigError, DataFileError

#: Pascal VOC's 21 classes, in the order of their mask ids (0 is the background)
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_SUBDIR = Path("VOCdevkit") / "VOC2012"
VOC_LISTS = Path("ImageSets") / "Segmentation"

Pair = tuple[Path, Path]


def mask_folder_pairs(root: str | Path) -> list[Pair]:
    """``(image, mask)`` for every image under ``root/images``, sorted by stem; every image needs its mask."""
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise ConfigError("data.root", root, f"it has no {folder.name}/ folder",
                              "point data.root at a folder holding images/<name>.png|jpg and masks/<name>.png")
    images: dict[str, Path] = {}
    for path in sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.stem in images:
            raise DataFileError(path, f"it shares its name with {images[path.stem].name}, so both would take "
                                f"masks/{path.stem}.png", "rename or remove one of them")
        images[path.stem] = path
    if not images:
        raise ConfigError("data.root", root, "its images/ folder holds no images",
                          "put the images in data.root/images and their masks in data.root/masks")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
    for stem, image in images.items():
        if stem not in masks:
            _no_mask(image, masks_dir / f"{stem}.png")
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _no_mask(image: Path, mask: Path) -> None:
    others = sorted(p.name for p in mask.parent.glob(f"{mask.stem}.*")) if mask.parent.is_dir() else []
    hint = f" ({others[0]} is not a PNG: lossy formats change class ids)" if others else ""
    raise DataFileError(image, f"it has no mask {mask}{hint}", f"add {mask.name} (class ids per pixel) or remove "
                        "the image")


def voc_dir(root: str | Path) -> Path:
    """``root/VOCdevkit/VOC2012``, checked to hold the segmentation part of the dataset."""
    base = Path(root) / VOC_SUBDIR
    for part in ("JPEGImages", "SegmentationClass", VOC_LISTS):
        if not (base / part).is_dir():
            raise ConfigError("data.root", root, f"it has no {VOC_SUBDIR / part} (Pascal VOC 2012 segmentation)",
                              "point data.root at the folder holding VOCdevkit/, or add data.download=true to "
                              "fetch it (2 GB)")
    return base


def voc_pairs(root: str | Path, split: str) -> list[Pair]:
    """``(JPEGImages/<id>.jpg, SegmentationClass/<id>.png)`` for the ids of ``ImageSets/Segmentation/<split>.txt``."""
    base = voc_dir(root)
    listing = base / VOC_LISTS / f"{split}.txt"
    if not listing.is_file():
        raise ConfigError("data.root", root, f"it has no {VOC_SUBDIR / VOC_LISTS / listing.name}",
                          "restore the list file of the Pascal VOC 2012 segmentation split")
    pairs = []
    for name in listing.read_text().split():
        image, mask = base / "JPEGImages" / f"{name}.jpg", base / "SegmentationClass" / f"{name}.png"
        if not image.is_file():
            raise DataFileError(image, f"{listing.name} lists it but the file does not exist",
                                f"restore it, or remove {name} from {listing}")
        if not mask.is_file():
            _no_mask(image, mask)
        pairs.append((image, mask))
    if not pairs:
        raise ConfigError("data.root", root, f"{listing} lists no images", "restore the Pascal VOC list file")
    return pairs


def evenly_spaced(count: int, total: int) -> list[int]:
    """``count`` indices spread over ``range(total)`` (all of them when ``count >= total``), first and last included."""
    if count >= total:
        return list(range(total))
    if count <= 1:
        return [0][:count]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def check_pairs(pairs: list[Pair], reader: PairReader, count: int) -> None:
    """Decode ``count`` evenly spaced pairs as training will; the first bad file raises its sentence."""
    for index in evenly_spaced(count, len(pairs)):
        reader(pairs[index])
