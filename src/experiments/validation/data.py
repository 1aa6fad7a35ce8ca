"""Checks of the data: where it is read from, augmentation ranges, image/mask files (sampled), class folders, batch
sizes against split sizes, and what evaluating a run on other data may change.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from experiments.errors import ConfigError
from experiments.validation.common import (
    _check_test_perturbation,
)
from experiments.validation.rules import (
    _listing,
    _number,
    _positive_int,
    _processes,
    _require,
    _target,
)


def _check_data_source(cfg: DictConfig) -> None:
    """Datasets read from disk must be there (or be asked to download) before anything starts."""
    data = cfg.data
    image_folder = _target(data).endswith(".ImageFolderDataModule")
    if OmegaConf.is_missing(data, "num_classes") and not image_folder:
        raise ConfigError("data.num_classes", "???", "this dataset needs its number of classes",
                          "set data.num_classes to the number of classes of the dataset")
    if "root" not in data:
        return
    from pathlib import Path

    _check_file_data(cfg)
    root = Path(str(data.root))
    if not data.get("download", False) and not root.is_dir():
        raise ConfigError("data.root", data.root, "the folder does not exist and nothing downloads by default",
                          "point data.root at a local copy of the dataset or add data.download=true")
    if image_folder:
        _count_class_folders(data, root)
    elif _target(data).endswith(_MASK_DATA) and not data.get("download", False):
        _check_mask_files(data, root)


#: augment knob -> (largest value, why): each is 0 (off) or positive (data/augment.py)
_AUGMENT_LIMITS = {"flip": (1, "a probability"), "brightness": (None, "a spread"), "noise": (None, "a std"),
                   "contrast": (1, "a factor's spread around 1"), "saturation": (1, "a factor's spread around 1")}


def _check_augment(cfg: DictConfig) -> None:
    """The ``augment`` group: a whole padding in pixels, a flip probability, non-negative jitter and noise."""
    node = cfg.get("augment")
    if not isinstance(node, DictConfig):
        return
    _positive_int(cfg, "augment.pad", 0)
    pad = node.get("pad", 0)
    _require(pad < int(OmegaConf.select(cfg, "data.image_size", default=pad + 1)), "augment.pad", pad,
             "a crop offset of the image size or more can leave only padding", "use e.g. augment.pad=4")
    for knob, (top, what) in _AUGMENT_LIMITS.items():
        value = node.get(knob, 0)
        _require(_number(value) and value >= 0 and (top is None or value <= top), f"augment.{knob}", value,
                 f"it is {what}, from 0 (off){'' if top is None else f' to {top}'}", f"use e.g. augment.{knob}=0.1")


#: data modules of image/mask pairs (data/segmentation_folders.py), whose files validation samples
_MASK_DATA = (".MaskFolderDataModule", ".VOCDataModule")


def _check_file_data(cfg: DictConfig) -> None:
    """Knobs of the datasets read from files: split fractions, memory budget, and for masks the class ids."""
    data = cfg.data
    for key, minimum in (("stats_images", 1), ("check_files", 0)):
        _positive_int(cfg, f"data.{key}", minimum)
    budget = data.get("memory_budget_mb")
    _require(budget is None or (_number(budget) and budget >= 0), "data.memory_budget_mb", budget,
             "it is the size in MiB above which the data stream from disk", "use e.g. 2048, 0 to always stream, or "
             "null to always load into memory")
    fractions = [data.get(k, 0.0) for k in ("val_fraction", "test_fraction")]
    _require(all(_number(f) and 0 <= f < 1 for f in fractions) and sum(fractions) < 1, "data.val_fraction",
             fractions[0], f"val and test fractions ({_listing(map(str, fractions))}) must lie in [0, 1) and leave "
             "training images", "use e.g. data.val_fraction=0.15 data.test_fraction=0.15")
    if not _target(data).endswith(_MASK_DATA):
        return
    _positive_int(cfg, "data.num_classes", 2)
    classes, ignore, names = int(data.num_classes), data.get("ignore_index"), data.get("class_names")
    _require(ignore is None or (isinstance(ignore, int) and not 0 <= ignore < classes), "data.ignore_index", ignore,
             f"it is a class id of data.num_classes={classes}, so that class would never be learned",
             "use data.ignore_index=255 (the Pascal VOC convention) or null")
    _require(names is None or (isinstance(names, ListConfig) and len(names) == classes), "data.class_names",
             names, f"it names one class per id, {classes} of them", f"give {classes} names or null")


def _check_mask_files(data: DictConfig, root: Any) -> None:
    """Every image has its mask (listing), and ``data.check_files`` evenly spaced pairs decode, match in size and
    hold class ids only, as the data module will read them (``data/segmentation_files.py``)."""
    from experiments.data import segmentation_files as files
    from experiments.data.image_files import PairReader

    voc = _target(data).endswith(".VOCDataModule")
    pairs = files.voc_pairs(root, "train") + files.voc_pairs(root, "val") if voc else files.mask_folder_pairs(root)
    reader = PairReader(int(data.image_size), int(data.channels), int(data.num_classes), data.get("ignore_index"))
    files.check_pairs(pairs, reader, int(data.get("check_files", 32)))


def _count_class_folders(data: DictConfig, root: Any) -> None:
    """An image folder's classes are its sub-folders with images: a given ``data.num_classes`` must be their number,
    and a missing one becomes it, so the model (``model.num_classes`` interpolates it) is built for the classes
    found. The one value validation fills in; the run's ``config.yaml``, written after, records the count."""
    from experiments.data.folders import class_folders

    given = None if OmegaConf.is_missing(data, "num_classes") else data.get("num_classes")
    names = class_folders(root, given)
    with open_dict(data):
        data.num_classes = len(names)


def check_evaluation_data(trained: DictConfig, cfg: DictConfig) -> None:
    """``evaluate RUN data=...``: ``cfg`` (the run's config with other data) must be data the trained network takes.

    The network was built for the run's task, classes, channels and image size; other data is converted to the
    channels and size it asks for (``data.channels``, ``data.image_size``), so a mismatch there is one override."""
    _check_data_source(cfg)
    _positive_int(cfg, "data.test_size")
    _check_test_perturbation(cfg)
    was, now = trained.data, cfg.data
    _require(now.get("task") == was.get("task"), "data.task", now.get("task"), f"the run's network predicts for "
             f"{was.get('task')}", f"evaluate it on {was.get('task')} data")
    _require(now.num_classes == was.num_classes, "data.num_classes", now.num_classes, f"the run's network predicts "
             f"{was.num_classes} classes", f"evaluate it on data with {was.num_classes} classes")
    for key, what in (("channels", "{}-channel images"), ("image_size", "{0}x{0} images")):
        _require(now.get(key) == was.get(key), f"data.{key}", now.get(key), f"the run's network takes "
                 f"{what.format(was.get(key))}", f"add data.{key}={was.get(key)} (images are converted to it)")


def _check_data_sizes(cfg: DictConfig) -> None:
    """A batch must fit in the training split (per DDP process), and every process needs evaluation data."""
    batch, train = OmegaConf.select(cfg, "data.batch_size"), OmegaConf.select(cfg, "data.train_size")
    procs = _processes(cfg)
    if isinstance(batch, int) and isinstance(train, int):
        per = -(-train // procs)
        where = f"the {per} training images each of the {procs} DDP processes gets" if procs > 1 \
            else f"data.train_size={train}"
        _require(batch <= per, "data.batch_size", batch, f"it exceeds {where}, so each epoch is one partial batch",
                 f"use data.batch_size<={per} or a larger data.train_size")
    for split in ("val", "test"):
        n = OmegaConf.select(cfg, f"data.{split}_size")
        if procs > 1 and isinstance(n, int):
            _require(n >= procs, f"data.{split}_size", n, f"each of the {procs} DDP processes needs a {split} image",
                     f"use data.{split}_size>={procs}")
    if OmegaConf.select(cfg, "data.num_workers") is not None:
        _positive_int(cfg, "data.num_workers", 0)
