"""What an image folder (``data=image_folder``) holds, decided once and without torch: its classes, its files, and
whether it is already split.

Validation reads it before training, so that ``data.num_classes`` can be left out (the model is built for the
classes found), a folder that cannot make a classification problem is one sentence, and a size the user typed is
checked against the images there are; :class:`~experiments.data.vision.ImageFolderDataModule` reads exactly these
files. Two layouts, as users keep them:

* ``root/<class>/*.png``: one sub-folder of images per class (at any depth below it, as torchvision's
  ``ImageFolder`` reads them), split by ``data.val_fraction`` / ``data.test_fraction`` per class;
* ``root/train/<class>/...`` with ``root/val/<class>/...`` and/or ``root/test/<class>/...``: the split is the
  folder's own; a missing ``val/`` or ``test/`` is carved from ``train/`` by its fraction.

Hidden entries (``.ipynb_checkpoints``) are ignored. A visible sub-folder without an image is a mistake, not a
class that silently never appears.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import ConfigError, DataFileError

#: torchvision's ``IMG_EXTENSIONS``: the files an image folder's data module loads
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: sub-folder names that mark a folder as already split
SPLIT_FOLDERS = ("train", "val", "test")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def _images(folder: Path) -> list[Path]:
    """Image files below ``folder`` (any depth, links followed), in a fixed order."""
    found = []
    for here, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(here) / n for n in sorted(names) if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith(".")]
    return found


@dataclass
class ImageFolder:
    """An image folder as read: class names (class k is the k-th), and ``(path, label)`` samples per part.

    ``parts`` holds ``"all"`` for a folder to split by fractions, else the folder's own ``"train"`` (and
    ``"val"``/``"test"`` where present)."""

    root: Path
    class_names: list[str]
    parts: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)

    @property
    def presplit(self) -> bool:
        return "all" not in self.parts

    def counts(self) -> dict[str, int]:
        """Images per class name over every part."""
        totals = dict.fromkeys(self.class_names, 0)
        for samples in self.parts.values():
            for _, label in samples:
                totals[self.class_names[label]] += 1
        return totals


def _refuse(root: Path, problem: str, fix: str) -> ConfigError:
    return ConfigError("data.root", root, problem, fix)


def _classes(folder: Path, root: Path) -> dict[str, list[Path]]:
    """Class name -> image files, every visible sub-folder of ``folder`` being a class that must hold images."""
    classes = {d.name: _images(d) for d in _visible_dirs(folder)}
    where = "" if folder == root else f"{folder.name}/"
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise _refuse(root, f"its class folder {where}{empty[0]} holds no images ({', '.join(IMAGE_SUFFIXES[:3])}, "
                      "...)", f"add images to {folder / empty[0]} or remove the folder")
    return classes


def read_image_folder(root: str | Path) -> ImageFolder:
    """The classes and files under ``root`` in either layout; :class:`ConfigError` when they cannot make a
    classification problem (no such folder, fewer than two classes, a class folder without images, a ``val/`` or
    ``test/`` class that ``train/`` lacks)."""
    root = Path(root)
    if not root.is_dir():
        raise _refuse(root, "the folder does not exist", "point data.root at a folder with one sub-folder of images "
                      "per class (data.root/<class>/*.png)")
    names = {d.name for d in _visible_dirs(root)}
    if names and names <= set(SPLIT_FOLDERS) and "train" in names:
        per_split = {split: _classes(root / split, root) for split in SPLIT_FOLDERS if split in names}
        classes = sorted(per_split["train"])
        for split, found in per_split.items():
            extra = sorted(set(found) - set(classes))
            if extra:
                raise _refuse(root, f"{split}/ has the class folder {extra[0]} that train/ lacks",
                              f"add {root / 'train' / extra[0]} with training images, or remove it from {split}/")
        index = {name: k for k, name in enumerate(classes)}
        parts = {split: [(path, index[name]) for name, files in found.items() for path in files]
                 for split, found in per_split.items()}
    else:
        found = _classes(root, root)
        classes = sorted(found)
        parts = {"all": [(path, k) for k, name in enumerate(classes) for path in found[name]]}
    if len(classes) < 2:
        shown = f"only one class folder ({classes[0]})" if classes else "no class folders"
        raise _refuse(root, f"it holds {shown}, so every prediction would be right", "put one sub-folder of images "
                      "per class under data.root (at least two classes)")
    return ImageFolder(root, classes, parts)


def check_readable(folder: ImageFolder) -> None:
    """Each class has at least one image that decodes (the first that does is enough); else one sentence."""
    from experiments.data.image_files import open_image

    first: dict[int, list[Path]] = {}
    for samples in folder.parts.values():
        for path, label in samples:
            first.setdefault(label, []).append(path)
    for label, paths in sorted(first.items()):
        for path in paths:
            try:
                open_image(path).close()
                break
            except DataFileError:
                continue
        else:
            name = folder.class_names[label]
            raise _refuse(folder.root, f"no image of the class {name} can be read ({len(paths)} files)",
                          f"re-export the images of {name} or remove its folder")


def class_folders(root: str | Path, expected: int | None = None) -> list[str]:
    """The class names under ``root``, sorted (class k is the k-th); ``expected`` (``data.num_classes``, None to
    count them) must be their number, else :class:`ConfigError`."""
    names = read_image_folder(root).class_names
    if expected is not None and expected != len(names):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError("data.num_classes", expected, f"{root} has {len(names)} class folders with images ({shown})",
                          f"set data.num_classes={len(names)}, or leave it out to count them")
    return names
