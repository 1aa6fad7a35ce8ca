"""How many images each split of a data option can hold, read from the files without torch.

Validation asks it when the user typed a size (``data.train_size=10000``) so that a size the data cannot honour is
one sentence before anything heavy starts, naming how many there are. The answer is the very split the data module
will build (``data/splits.py`` on the same labels, fractions and seed), before its cap. A study's or a scale's
size is a cap and never needs this: above the data it means all, said once in the log.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from experiments.data.splits import plan_splits

#: data module class (the end of ``_target_``) -> how its parts are read
_FOLDER, _MASKS, _VOC, _TORCHVISION = (".ImageFolderDataModule", ".MaskFolderDataModule", ".VOCDataModule",
                                       ".TorchvisionDataModule")


def _labels(data: DictConfig) -> dict[str, list[int]] | None:
    """Each part's labels (``"all"`` or the dataset's own splits); None for generated data (any size is fine)."""
    target = str(data.get("_target_", ""))
    root = Path(str(data.get("root", "")))
    if target.endswith(_FOLDER):
        from experiments.data.folders import read_image_folder

        folder = read_image_folder(root)
        return {part: [label for _, label in samples] for part, samples in folder.parts.items()}
    if target.endswith(_MASKS):
        from experiments.data.segmentation_files import mask_folder_pairs

        return {"all": [0] * len(mask_folder_pairs(root))}
    if target.endswith(_VOC):
        from experiments.data.segmentation_files import voc_pairs

        return {"train": [0] * len(voc_pairs(root, "train")), "test": [0] * len(voc_pairs(root, "val"))}
    if target.endswith(_TORCHVISION):
        from experiments.data.vision_files import official_labels

        return official_labels(str(data.name), root)
    return None


def available_sizes(data: DictConfig) -> dict[str, int] | None:
    """``{"train": n, "val": n, "test": n}``: images per split before the caps; None for generated data."""
    labels = _labels(data)
    if labels is None:
        return None
    fractions = {"val": float(data.get("val_fraction", 0.0) or 0.0), "test": float(data.get("test_fraction", 0.0)
                                                                                    or 0.0)}
    return plan_splits(labels, fractions, {}, int(data.get("seed", 0))).available
