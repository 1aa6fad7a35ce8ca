"""Which sub-folders of an image folder (``data=image_folder``) are its classes, decided once and without torch.

Validation counts them before training, so that ``data.num_classes`` can be left out (the model is built for
the classes found) and a wrong count is one sentence; :class:`~experiments.data.vision.ImageFolderDataModule`
reads exactly these folders. A class is a sub-folder holding at least one image at any depth, as torchvision's
``ImageFolder`` reads them; hidden folders (``.ipynb_checkpoints``) and folders without images are not classes.
"""

from __future__ import annotations

import os
from pathlib import Path

from experiments.errors import ConfigError

#: torchvision's ``IMG_EXTENSIONS``: the files an image folder's data module loads
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _holds_images(folder: Path) -> bool:
    return any(
        name.lower().endswith(IMAGE_SUFFIXES) for _, _, names in os.walk(folder, followlinks=True) for name in names
    )


def class_folders(root: str | Path, expected: int | None = None) -> list[str]:
    """The class names under ``root``, sorted (class k is the k-th); ``expected`` (``data.num_classes``, None to
    count them) must be their number, else :class:`ConfigError`, as when there are none."""
    root = Path(root)
    names = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _holds_images(p)
    ) if root.is_dir() else []
    if not names:
        raise ConfigError("data.root", root, "it holds no class folders with images (data.root/<class>/*.png)",
                          "point data.root at a folder with one sub-folder of images per class")
    if expected is not None and expected != len(names):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError("data.num_classes", expected, f"{root} has {len(names)} class folders with images ({shown})",
                          f"set data.num_classes={len(names)}, or leave it out to count them")
    return names
