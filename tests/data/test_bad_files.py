"""Bad segmentation files are one sentence naming the file and the fix (``errors.DataFileError``, exit 2, no
traceback): found before training by the layout check and the sampled pixel check, at setup when the data load
into memory, and at the batch when they stream (tests/data/test_streaming.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments.config import compose
from experiments.errors import ConfigError, DataFileError
from experiments.validation import validate
from tests.conftest import run_cli
from tests.data.mask_trees import save_mask, write_mask_folder, write_voc


def check(root: Path, *overrides: str) -> str:
    """Validation's sentence for the mask folder at ``root`` (pytest fails if there is none)."""
    with pytest.raises(DataFileError) as err:
        validate(compose(["model=fcn", "data=mask_folder", f"data.root={root}", "data.num_classes=3", *overrides]))
    message = str(err.value)
    assert "\n" not in message and message.endswith(".")
    return message


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_mask_folder(tmp_path / "seg", n=6, size=20)


def test_a_sound_folder_validates(root: Path) -> None:
    validate(compose(["model=fcn", "data=mask_folder", f"data.root={root}", "data.num_classes=3"]))


def test_a_mask_whose_size_differs_from_its_image(root: Path) -> None:
    save_mask(np.zeros((18, 20), np.uint8), root / "masks" / "003.png")
    assert check(root) == (f"{root}/masks/003.png is invalid: it is 20x18 pixels but its image 003.png is 20x20; "
                           "save the mask at its image's size (one class id per image pixel).")


def test_a_mask_value_at_or_above_num_classes(root: Path) -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[5, 5], mask[0, 0] = 7, 255  # 255 is the ignore index: fine; 7 is not a class of 3
    save_mask(mask, root / "masks" / "005.png", mode="L")
    message = check(root)
    assert message.startswith(f"{root}/masks/005.png is invalid: it holds class id 7 but data.num_classes=3 "
                              "(ids 0-2, 255 for unlabelled pixels)")
    assert "set data.num_classes=8" in message
    assert "class id 255" in check(root, "data.ignore_index=null")  # without an ignore index 255 is a bad id too


def test_an_image_without_a_mask(root: Path) -> None:
    (root / "masks" / "002.png").unlink()
    assert check(root) == (f"{root}/images/002.png is invalid: it has no mask {root}/masks/002.png; add 002.png "
                           "(class ids per pixel) or remove the image.")
    Image.new("L", (20, 20)).save(root / "masks" / "002.jpg")
    assert "(002.jpg is not a PNG: lossy formats change class ids)" in check(root)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_an_unreadable_or_truncated_file(root: Path, damage: str) -> None:
    image = root / "images" / "000.png"  # the first pair is always in the sample
    image.write_bytes(image.read_bytes()[:60] if damage == "truncated" else b"not an image at all")
    message = check(root)
    assert message.startswith(f"{image} is invalid: it cannot be read as an image (")
    assert message.endswith("; re-export the file, or remove it (and its mask) from the dataset.")


def test_an_rgb_mask_and_two_images_sharing_a_name(root: Path) -> None:
    Image.new("RGB", (20, 20), (128, 0, 0)).save(root / "masks" / "005.png")
    assert check(root).startswith(f"{root}/masks/005.png is invalid: it is a RGB image, not one class id per pixel;")
    Image.new("RGB", (20, 20)).save(root / "images" / "001.jpg")
    assert check(root).startswith(f"{root}/images/001.png is invalid: it shares its name with 001.jpg, so both")


def test_only_a_sample_is_decoded_before_training_but_every_file_at_setup(root: Path, make_cfg) -> None:
    from experiments.train import train

    save_mask(np.full((20, 20), 9, np.uint8), root / "masks" / "002.png", mode="L")
    overrides = ["model=fcn", "data=mask_folder", f"data.root={root}", "data.num_classes=3", "data.image_size=16",
                 "data.batch_size=2", "data.num_workers=0", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                 "trainer.enable_progress_bar=false", "diagnostics=off"]
    validate(compose([*overrides, "data.check_files=2"]))  # files 000 and 005 only: 002 passes unseen
    cfg = make_cfg([*overrides, "data.check_files=2"], tiny=False)
    with pytest.raises(DataFileError, match=r"masks/002.png is invalid: it holds class id 9"):
        train(cfg)  # in memory: every file is read at setup, before the first step
    run = Path(cfg.run_dir)
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith(f"{root}/masks/002.png is invalid")
    assert not (run / "checkpoints" / "last.ckpt").exists()  # nothing trained


def test_voc_list_naming_a_missing_file(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "pascal", train=4, val=2)
    base = root / "VOCdevkit" / "VOC2012"
    (base / "JPEGImages" / "2008_000001.jpg").unlink()
    with pytest.raises(DataFileError) as err:
        validate(compose(["model=fcn", "data=voc", f"data.root={root}"]))
    assert str(err.value) == (f"{base}/JPEGImages/2008_000001.jpg is invalid: val.txt lists it but the file does not "
                              f"exist; restore it, or remove 2008_000001 from {base}/ImageSets/Segmentation/val.txt.")
    (base / "ImageSets" / "Segmentation" / "train.txt").unlink()
    with pytest.raises(ConfigError, match=r"it has no VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"):
        validate(compose(["model=fcn", "data=voc", f"data.root={root}"]))


def test_cli_bad_mask_exits_2_with_one_line_and_trains_nothing(root: Path, tmp_path: Path) -> None:
    save_mask(np.zeros((10, 10), np.uint8), root / "masks" / "000.png")
    run = tmp_path / "run"
    result = run_cli("experiments.train", "model=fcn", "data=mask_folder", f"data.root={root}", "data.num_classes=3",
                     f"hydra.run.dir={run}", timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"error: {root}/masks/000.png is invalid: it is 10x10 pixels but its image 000.png is 20x20; "
                    "save the mask at its image's size (one class id per image pixel).")
    assert not (run / "checkpoints").exists()
