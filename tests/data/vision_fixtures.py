"""Tiny copies of every data option's files in their real on-disk formats, for tests that must not download.

* MNIST / Fashion-MNIST: LeCun's idx files under ``root/<MNIST|FashionMNIST>/raw`` (big-endian header, then bytes);
* CIFAR-10: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``, pickled dicts as published;
* an image folder: ``root/<class>/*.png`` (or already split, ``root/{train,val,test}/<class>/``);
* mask folders and VOC: ``tests/data/mask_trees.py``.

Each class is drawn so that it can be learned (a bright bar at a class-specific row), so one training step moves
the loss like real data would.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from experiments.data.vision_files import CIFAR_DIR, CIFAR_TRAIN, DATASETS


def class_images(labels: np.ndarray, size: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 ``(N, size, size)`` (or ``(N, size, size, 3)``): noise plus a bright bar whose row is the class."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (len(labels), size, size), dtype=np.uint8)
    step = max(1, (size - 4) // 10)
    for i, label in enumerate(labels):
        images[i, 2 + step * label: 2 + step * label + step, 3: size - 3] = 255
    return np.repeat(images[..., None], 3, axis=-1) if channels == 3 else images


def write_idx(name: str, root: Path, n_train: int = 120, n_test: int = 40) -> Path:
    """MNIST or Fashion-MNIST (``name``) in idx format under ``root``; labels cycle through the 10 classes."""
    raw = Path(root) / DATASETS[name][0] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = class_images(labels, 28, seed=n)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())
    return Path(root)


def write_cifar10(root: Path, per_batch: int = 30, n_test: int = 40) -> Path:
    """CIFAR-10's python batches under ``root/cifar-10-batches-py`` (5 training batches of ``per_batch``)."""
    folder = Path(root) / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, seed: int) -> dict:
        labels = (np.arange(n) % 10).astype(np.int64)
        images = class_images(labels, 32, channels=3, seed=seed)  # (N, H, W, 3) -> rows of R, G, B planes
        return {"data": images.transpose(0, 3, 1, 2).reshape(n, -1), "labels": labels.tolist()}

    for k, name in enumerate(CIFAR_TRAIN):
        (folder / name).write_bytes(pickle.dumps(batch(per_batch, k)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test, 99)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": DATASETS["cifar10"][3]}))
    return Path(root)


def write_image_folder(root: Path, counts: dict[str, int], size: int = 12) -> Path:
    """``root/<class>/<i>.png`` with ``counts[class]`` images each; class k has its bar at row k."""
    from PIL import Image

    for k, (name, n) in enumerate(counts.items()):
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(class_images(np.full(n, k), size, channels=3, seed=k)):
            Image.fromarray(image).save(Path(root) / name / f"{i}.png")
    return Path(root)
