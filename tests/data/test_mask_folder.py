"""``data=mask_folder`` and ``data=voc`` on small trees of PNG/JPEG files written here: what they read, how they split,
that palette and grey-level masks mean the same ids, that nothing downloads unless asked, and that a segmentation
model learns from them (with ``augment=crop_flip``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.config import compose
from experiments.data.segmentation_files import VOC_CLASSES
from experiments.data.segmentation_folders import MaskFolderDataModule, VOCDataModule
from experiments.errors import ConfigError
from experiments.validation import validate
from tests.data.mask_trees import scene, write_mask_folder, write_voc


def test_mask_folder_pairs_images_with_masks_and_resizes_masks_by_nearest(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "seg", n=20, size=20)
    dm = MaskFolderDataModule(str(root), num_classes=3, image_size=16, batch_size=4, val_fraction=0.2,
                              test_fraction=0.1, class_names=["ground", "red", "green"])
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 14, "val": 4, "test": 2}
    images, masks = dm.splits["train"].tensors
    assert images.shape == (14, 3, 16, 16) and masks.shape == (14, 16, 16) and masks.dtype == torch.long
    assert set(masks.unique().tolist()) == {0, 1, 2, 255}  # ids and the unlabelled outlines, nothing in between
    assert images.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # standardised with the training split's statistics
    assert dm.class_names == ["ground", "red", "green"] and not dm.streaming

    # the mask of the first training image is its file's ids, resized by nearest neighbour
    first = dm.list_samples()["train"][0]
    ids = np.asarray(Image.open(first[1]))
    expected = np.asarray(Image.fromarray(ids).resize((16, 16), Image.Resampling.NEAREST))
    assert torch.equal(masks[0], torch.from_numpy(expected.astype(np.int64)))


def test_palette_and_grey_level_masks_and_png_or_jpeg_images_give_the_same_ids(tmp_path: Path) -> None:
    palette = MaskFolderDataModule(str(write_mask_folder(tmp_path / "p", n=8)), num_classes=3, image_size=20)
    grey = MaskFolderDataModule(str(write_mask_folder(tmp_path / "g", n=8, image_suffix=".jpg", mask_mode="L")),
                                num_classes=3, image_size=20)
    assert Image.open(tmp_path / "p" / "masks" / "000.png").mode == "P"
    assert Image.open(tmp_path / "g" / "masks" / "000.png").mode == "L"
    palette.setup()
    grey.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(palette.splits[split].tensors[1], grey.splits[split].tensors[1])
    _, mask = scene(0, 20)  # file 000's ids, in whichever split it landed
    every = torch.cat([split.tensors[1] for split in palette.splits.values()])
    assert (every == torch.from_numpy(mask.astype(np.int64))).all(dim=(1, 2)).sum() == 1


def test_voc_reads_the_devkit_lists_with_val_as_test_and_a_held_out_part_of_train_as_val(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "pascal", train=20, val=6)
    cfg = compose(["model=fcn", "data=voc", f"data.root={root}"])
    assert cfg.data.num_classes == 21 and cfg.data.ignore_index == 255
    validate(cfg)
    dm = VOCDataModule(str(root), image_size=16, val_fraction=0.1, num_workers=0)
    dm.setup()
    samples = dm.list_samples()
    assert {k: len(v) for k, v in samples.items()} == {"train": 18, "val": 2, "test": 6}
    assert all(image.parent.name == "JPEGImages" and mask.parent.name == "SegmentationClass"
               for image, mask in samples["train"])
    assert {p[0].stem for p in samples["test"]} == {f"2008_{i:06d}" for i in range(6)}  # the official val list
    assert not {p[0].stem for p in samples["val"]} & {p[0].stem for p in samples["test"]}
    assert dm.class_names == list(VOC_CLASSES) and len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"
    assert set(dm.splits["test"].tensors[1].unique().tolist()) <= {0, 1, 2, 255}


def test_voc_downloads_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []
    monkeypatch.setattr(torchvision.datasets, "VOCSegmentation", lambda *a, **k: calls.append((a, k)))
    VOCDataModule(str(tmp_path)).prepare_data()
    assert calls == []
    VOCDataModule(str(tmp_path), download=True).prepare_data()
    assert calls == [((str(tmp_path),), {"year": "2012", "image_set": "trainval", "download": True})]

    with pytest.raises(ConfigError) as err:  # no devkit and no download: one sentence before training
        validate(compose(["model=fcn", "data=voc", f"data.root={tmp_path}"]))
    assert str(err.value).startswith(f"data.root={tmp_path} is invalid: it has no VOCdevkit/VOC2012/JPEGImages")
    assert "data.download=true" in str(err.value)
    validate(compose(["model=fcn", "data=voc", f"data.root={tmp_path / 'new'}", "data.download=true"]))


@pytest.mark.parametrize(("override", "message"), [
    ("data.ignore_index=1", "data.ignore_index=1 is invalid: it is a class id of data.num_classes=3"),
    ("data.class_names=[a,b]", "data.class_names=[a,b] is invalid: it names one class per id, 3 of them"),
    ("data.val_fraction=0.9", "data.val_fraction=0.9 is invalid: val and test fractions"),
    ("data.memory_budget_mb=-1", "data.memory_budget_mb=-1 is invalid: it is the size in MiB"),
])
def test_bad_mask_folder_keys_are_one_sentence(tmp_path: Path, override: str, message: str) -> None:
    root = write_mask_folder(tmp_path / "seg", n=4)
    with pytest.raises(ConfigError) as err:
        validate(compose(["model=fcn", "data=mask_folder", f"data.root={root}", "data.num_classes=3", override]))
    assert str(err.value).startswith(message)


def test_a_segmentation_model_learns_from_a_mask_folder_with_crop_flip(tmp_path: Path, make_cfg) -> None:
    from experiments.train import train

    root = write_mask_folder(tmp_path / "seg", n=32, size=16)
    cfg = make_cfg(["model=fcn", "data=mask_folder", f"data.root={root}", "data.num_classes=3",
                    "data.class_names=[ground,red,green]", "data.image_size=16", "data.batch_size=8",
                    "data.num_workers=0", "augment=crop_flip", "augment.pad=2", "model.stages=2", "model.variant=16s",
                    "optimizer.lr=0.01", "trainer.max_epochs=6", "trainer.enable_progress_bar=false",
                    "trainer.accelerator=cpu", "diagnostics=off"], tiny=False)
    record = train(cfg)
    assert record["status"] == "completed" and record["choices"]["augment"] == "crop_flip"
    metrics = record["metrics"]
    assert metrics["test/pixel_acc"] > 0.8 and metrics["test/miou"] > 0.5, metrics  # colour tells the classes apart
    assert {"test/iou_ground", "test/iou_red", "test/iou_green"} <= set(metrics)
