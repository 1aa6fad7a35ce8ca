"""Rules of the ``data`` group: split and image sizes, where the data is read from, image/mask files (sampled), class
folders, batch sizes against split sizes (per DDP process); and what evaluating a run on other data may change
(:func:`check_evaluation_data`, called by ``evaluate``, not a registered rule).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from experiments.errors import ConfigError
from experiments.validation.checks import is_number, listing, positive_int, process_count, require, target_of
from experiments.validation.registry import rule


@rule("data")
def _check_sizes(cfg: DictConfig) -> None:
    """Split sizes and the batch are whole numbers >= 1; images are at least 8 pixels, grayscale or RGB."""
    for key in ("data.batch_size", "data.train_size", "data.val_size", "data.test_size"):
        positive_int(cfg, key, 0 if key == "data.val_size" else 1)  # val_size=0: no held-out images (data/splits.py)
    positive_int(cfg, "data.image_size", 8)
    channels = OmegaConf.select(cfg, "data.channels")
    require(channels in (1, 3), "data.channels", channels, "images are grayscale or RGB",
            "use data.channels=1 or data.channels=3")


@rule("data")
def _check_test_perturbation(cfg: DictConfig) -> None:
    """``data.test_shift`` (pixels) and ``data.test_noise`` (a standard deviation) of the shapes test split."""
    positive_int(cfg, "data.test_shift", 0)
    noise = OmegaConf.select(cfg, "data.test_noise", default=0.0)
    require(is_number(noise) and noise >= 0, "data.test_noise", noise, "it is the standard deviation of extra pixel "
            "noise on the test images", "use e.g. data.test_noise=0.1 (images lie in [0, 1]), or 0 for none")


@rule("data")
def _check_data_source(cfg: DictConfig) -> None:
    """Datasets read from disk must be there (or be asked to download) before anything starts."""
    data = cfg.data
    image_folder = target_of(data).endswith(".ImageFolderDataModule")
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
    elif target_of(data).endswith(_MASK_DATA) and not data.get("download", False):
        _check_mask_files(data, root)
    _check_typed_sizes(cfg)


def _typed(cfg: DictConfig) -> set[str]:
    """The keys the user typed on the command line (a study's or a scale's values are caps, not requests)."""
    overrides = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return {str(o).lstrip("+~").split("=", 1)[0] for o in overrides}


def _check_typed_sizes(cfg: DictConfig) -> None:
    """A split size the user typed must fit the split the data can make (``data/available.py``); one sentence
    naming how many images there are otherwise. Sizes from a study or a scale are caps: above the data they mean
    all, said in the log."""
    typed = [split for split in ("train", "val", "test") if f"data.{split}_size" in _typed(cfg)
             and isinstance(OmegaConf.select(cfg, f"data.{split}_size"), int)]
    if not typed or (cfg.data.get("download", False)):
        return
    from experiments.data.available import available_sizes

    available = available_sizes(cfg.data)
    for split in typed if available is not None else ():
        asked = OmegaConf.select(cfg, f"data.{split}_size")
        require(asked <= available[split], f"data.{split}_size", asked, f"the data has {available[split]} {split} "
                f"images{' (the rest of the split fractions)' if split == 'train' else ''}",
                f"use data.{split}_size<={available[split]}, or null for all of them")


def _check_no_validation_images(cfg: DictConfig) -> None:
    """``data.val_size=0`` (no validation images: the loop watches the test split) must not let the test images
    choose the tested weights: no best checkpoint, no early stopping."""
    if cfg.data.get("val_size", None) != 0:
        return
    callbacks = cfg.get("callbacks") or {}
    best = callbacks.get("model_checkpoint") if isinstance(callbacks, DictConfig) else None
    chooses = isinstance(best, DictConfig) and best.get("save_top_k", 1) != 0
    require(not chooses, "data.val_size", 0, "with no validation images the validation loop runs on the test "
            "split, and the best checkpoint would be chosen on the test images", "add "
            "callbacks.model_checkpoint.save_top_k=0 (the last weights are tested, as He et al. report), or hold "
            "out images with data.val_size=null")
    require(not (isinstance(callbacks, DictConfig) and "early_stopping" in callbacks), "data.val_size", 0,
            "with no validation images early stopping would watch the test split", "drop early_stopping from "
            "callbacks, or hold out images with data.val_size=null")


#: data modules of image/mask pairs (data/segmentation_folders.py), whose files validation samples
_MASK_DATA = (".MaskFolderDataModule", ".VOCDataModule")


def _check_file_data(cfg: DictConfig) -> None:
    """Knobs of the datasets read from files: split fractions, memory budget, and for masks the class ids."""
    data = cfg.data
    for key, minimum in (("stats_images", 1), ("check_files", 0)):
        positive_int(cfg, f"data.{key}", minimum)
    budget = data.get("memory_budget_mb")
    require(budget is None or (is_number(budget) and budget >= 0), "data.memory_budget_mb", budget,
            "it is the size in MiB above which the data stream from disk", "use e.g. 2048, 0 to always stream, or "
            "null to always load into memory")
    fractions = [data.get(k, 0.0) for k in ("val_fraction", "test_fraction")]
    require(all(is_number(f) and 0 <= f < 1 for f in fractions) and sum(fractions) < 1, "data.val_fraction",
            fractions[0], f"val and test fractions ({listing(map(str, fractions))}) must lie in [0, 1) and leave "
            "training images", "use e.g. data.val_fraction=0.15 data.test_fraction=0.15")
    if not target_of(data).endswith(_MASK_DATA):
        return
    positive_int(cfg, "data.num_classes", 2)
    classes, ignore, names = int(data.num_classes), data.get("ignore_index"), data.get("class_names")
    require(ignore is None or (isinstance(ignore, int) and not 0 <= ignore < classes), "data.ignore_index", ignore,
            f"it is a class id of data.num_classes={classes}, so that class would never be learned",
            "use data.ignore_index=255 (the Pascal VOC convention) or null")
    require(names is None or (isinstance(names, ListConfig) and len(names) == classes), "data.class_names",
            names, f"it names one class per id, {classes} of them", f"give {classes} names or null")


def _check_mask_files(data: DictConfig, root: Any) -> None:
    """Every image has its mask (listing), and ``data.check_files`` evenly spaced pairs decode, match in size and
    hold class ids only, as the data module will read them (``data/segmentation_files.py``)."""
    from experiments.data import segmentation_files as files
    from experiments.data.image_files import PairReader

    voc = target_of(data).endswith(".VOCDataModule")
    pairs = files.voc_pairs(root, "train") + files.voc_pairs(root, "val") if voc else files.mask_folder_pairs(root)
    reader = PairReader(int(data.image_size), int(data.channels), int(data.num_classes), data.get("ignore_index"))
    files.check_pairs(pairs, reader, int(data.get("check_files", 32)))


def _count_class_folders(data: DictConfig, root: Any) -> None:
    """An image folder's classes are its sub-folders with images: a given ``data.num_classes`` must be their number,
    and a missing one becomes it, so the model (``model.num_classes`` interpolates it) is built for the classes
    found. The one value validation fills in; the run's ``config.yaml``, written after, records the count."""
    from experiments.data.folders import check_readable, class_folders, read_image_folder

    given = None if OmegaConf.is_missing(data, "num_classes") else data.get("num_classes")
    names = class_folders(root, given)
    check_readable(read_image_folder(root))  # one decodable image per class: a folder of broken files is no class
    with open_dict(data):
        data.num_classes = len(names)


@rule("data")
def _check_data_sizes(cfg: DictConfig) -> None:
    """A batch must fit in the training split (per DDP process), and every process needs evaluation data."""
    batch, train = OmegaConf.select(cfg, "data.batch_size"), OmegaConf.select(cfg, "data.train_size")
    procs = process_count(cfg)
    if isinstance(batch, int) and isinstance(train, int):
        per = -(-train // procs)
        where = f"the {per} training images each of the {procs} DDP processes gets" if procs > 1 \
            else f"data.train_size={train}"
        require(batch <= per, "data.batch_size", batch, f"it exceeds {where}, so each epoch is one partial batch",
                f"use data.batch_size<={per} or a larger data.train_size")
    for split in ("val", "test"):
        n = OmegaConf.select(cfg, f"data.{split}_size")
        if procs > 1 and isinstance(n, int):
            require(n >= procs, f"data.{split}_size", n, f"each of the {procs} DDP processes needs a {split} image",
                    f"use data.{split}_size>={procs}")
    if OmegaConf.select(cfg, "data.num_workers") is not None:
        positive_int(cfg, "data.num_workers", 0)
    _check_no_validation_images(cfg)


def check_evaluation_data(trained: DictConfig, cfg: DictConfig) -> None:
    """``evaluate RUN data=...``: ``cfg`` (the run's config with other data) must be data the trained network takes.

    The network was built for the run's task, classes, channels and image size; other data is converted to the
    channels and size it asks for (``data.channels``, ``data.image_size``), so a mismatch there is one override."""
    _check_data_source(cfg)
    positive_int(cfg, "data.test_size")
    _check_test_perturbation(cfg)
    was, now = trained.data, cfg.data
    require(now.get("task") == was.get("task"), "data.task", now.get("task"), f"the run's network predicts for "
            f"{was.get('task')}", f"evaluate it on {was.get('task')} data")
    require(now.num_classes == was.num_classes, "data.num_classes", now.num_classes, f"the run's network predicts "
            f"{was.num_classes} classes", f"evaluate it on data with {was.num_classes} classes")
    for key, what in (("channels", "{}-channel images"), ("image_size", "{0}x{0} images")):
        require(now.get(key) == was.get(key), f"data.{key}", now.get(key), f"the run's network takes "
                f"{what.format(was.get(key))}", f"add data.{key}={was.get(key)} (images are converted to it)")
