"""Real-dataset modules read local files only, train like the procedural data, and fail clearly when absent."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from experiments.config import compose
from experiments.data.vision import ImageFolderDataModule, TorchvisionDataModule
from experiments.validation import ConfigError, validate


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
    dm = TorchvisionDataModule("mnist", root=str(tmp_path), val_size=20, batch_size=16, image_size=32, channels=3)
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


def test_image_folder_needs_its_class_count(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.num_classes"):
        validate(compose(["data=image_folder", f"data.root={tmp_path}"]))


def test_image_folder_trains_end_to_end(tmp_path: Path, make_cfg) -> None:
    from PIL import Image

    from experiments.training import train

    root = tmp_path / "images"
    gen = torch.Generator().manual_seed(0)
    for k, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(30):
            level = 40 + 160 * k + int(torch.randint(0, 40, (1,), generator=gen))
            Image.new("RGB", (20, 20), (level, level, level)).save(root / name / f"{i}.png")
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
