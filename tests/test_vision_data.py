"""Real-dataset modules read local files only, train like the procedural data, and fail clearly when absent."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from experiments.config import compose
from experiments.data.vision import ImageFolderDataModule, TorchvisionDataModule
from experiments.errors import ConfigError
from experiments.validation import validate
from tests.conftest import run_cli


def write_idx_mnist(root: Path, n_train: int = 120, n_test: int = 40) -> None:
    """Tiny MNIST in the original IDX format: the class index drawn as a bright bar at a class-specific row."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.arange(n) % 10
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        for i, label in enumerate(labels.tolist()):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        header = struct.pack(">IIII", 0x803, n, 28, 28)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x801, n) + labels.to(torch.uint8).numpy().tobytes()
        )


def test_mnist_from_local_idx_files(tmp_path: Path) -> None:
    write_idx_mnist(tmp_path)
    dm = TorchvisionDataModule("mnist", root=str(tmp_path), val_fraction=1 / 6, batch_size=16, image_size=32,
                               channels=3)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.long
    assert len(dm.splits["train"]) == 100 and len(dm.splits["val"]) == 20 and len(dm.splits["test"]) == 40
    assert abs(float(dm.splits["train"].tensors[0].mean())) < 1e-4  # standardised with train statistics


def test_missing_dataset_is_one_sentence_before_training(tmp_path: Path) -> None:
    cfg = compose(["data=mnist", f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match=r"data.root=.*nowhere is invalid: .*data.download=true"):
        validate(cfg)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no MNIST files"):
        TorchvisionDataModule("mnist", root=str(empty)).setup()


def write_image_folder(root: Path, per_class: int = 30) -> Path:
    """``root/dark/*.png`` and ``root/light/*.png``: two classes told apart by brightness."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for k, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            level = 40 + 160 * k + int(torch.randint(0, 40, (1,), generator=gen))
            Image.new("RGB", (20, 20), (level, level, level)).save(root / name / f"{i}.png")
    return root


def test_image_folder_counts_its_classes_when_not_told(tmp_path: Path) -> None:
    """The sub-folders holding images, as the data module reads them: not a hidden one (a visible one without images
    is refused: tests/data/test_splits.py)."""
    from PIL import Image

    root = write_image_folder(tmp_path / "images", per_class=4)
    (root / "readme.txt").write_text("not an image, not a folder")
    (root / ".cache" / "thumbs").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / ".cache" / "thumbs" / "0.png")
    (root / "light" / "more").mkdir()
    Image.new("RGB", (20, 20), (250, 250, 250)).save(root / "light" / "more" / "extra.png")  # nested: still "light"

    cfg = compose(["data=image_folder", f"data.root={root}"])
    assert cfg.data.num_classes is None
    validate(cfg)
    assert cfg.data.num_classes == 2 and cfg.model.num_classes == 2  # the model follows the count
    dm = ImageFolderDataModule(str(root), image_size=8)
    dm.setup()
    assert dm.class_names == ["dark", "light"] and sum(len(s) for s in dm.splits.values()) == 9
    with pytest.raises(ConfigError, match=r"^data.num_classes=3 is invalid: .* has 2 class folders with images"):
        ImageFolderDataModule(str(root), num_classes=3).setup()


def test_image_folder_without_class_folders_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ConfigError, match=r"^data.root=.* is invalid: its class folder empty_class holds no images"):
        validate(compose(["data=image_folder", f"data.root={tmp_path}"]))


def test_cli_wrong_class_count_is_one_sentence_before_training(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=2)
    run = tmp_path / "run"
    result = run_cli("experiments.train", "data=image_folder", f"data.root={root}", "data.num_classes=3",
                     f"hydra.run.dir={run}", timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: data.num_classes=3 is invalid: ") and "set data.num_classes=2" in line
    assert not (run / "checkpoints").exists() and not (run / "tensorboard").exists()  # nothing trained


def test_image_folder_without_num_classes_trains_a_step(tmp_path: Path, make_cfg) -> None:
    from experiments.train import train

    root = write_image_folder(tmp_path / "images", per_class=8)
    cfg = make_cfg(["data=image_folder", f"data.root={root}", "data.image_size=16", "data.batch_size=4",
                    "+trainer.limit_train_batches=1", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                    "trainer.accelerator=cpu"], tiny=False)
    record = train(cfg)
    assert record["status"] == "completed"
    saved = (Path(cfg.run_dir) / "config.yaml").read_text()  # the count is part of the run's config
    assert "num_classes: 2" in saved
    state = torch.load(record["best_checkpoint"] or Path(cfg.run_dir) / "checkpoints" / "last.ckpt",
                       map_location="cpu", weights_only=True)["state_dict"]
    head = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2][-1]
    assert head.shape[0] == 2  # the classifier was built for the classes found


def test_image_folder_trains_end_to_end(tmp_path: Path, make_cfg) -> None:
    from experiments.train import train

    root = write_image_folder(tmp_path / "images")
    dm = ImageFolderDataModule(str(root), image_size=16, num_classes=2)
    dm.setup()
    assert dm.class_names == ["dark", "light"]
    assert sum(len(s) for s in dm.splits.values()) == 60

    cfg = make_cfg(["data=image_folder", f"data.root={root}", "data.num_classes=2", "data.image_size=16",
                    "data.batch_size=8", "trainer.max_epochs=3"], tiny=False)
    cfg.trainer.enable_progress_bar = False
    record = train(cfg)
    assert record["status"] == "completed"
    assert record["metrics"]["test/acc"] >= 0.9
