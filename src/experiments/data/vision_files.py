"""The torchvision sets' files as they lie on disk, read without torch: MNIST and Fashion-MNIST's idx files, CIFAR-10's
pickled batches.

Why not torchvision's classes alone: CIFAR10 checks each file's MD5, so only the full official copy opens, and
validation (torch-free) needs the labels to check a size the user typed against the images there are. The formats
are the published ones (LeCun's idx: a big-endian header of magic, count and shape, then bytes; CIFAR's
``cifar-10-batches-py``: pickled dicts of ``data`` (N x 3072, row-major RGB planes) and ``labels``), so a
small copy in the same format (tests/data/vision_fixtures.py) is read exactly like the real one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.errors import ConfigError

#: name -> (torchvision class, channels, native image size, torchvision's ``classes``)
DATASETS = {
    "mnist": ("MNIST", 1, 28, ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
                               "7 - seven", "8 - eight", "9 - nine"]),
    "fashion_mnist": ("FashionMNIST", 1, 28, ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                              "Sneaker", "Bag", "Ankle boot"]),
    "cifar10": ("CIFAR10", 3, 32, ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                   "truck"]),
}
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)


def _idx_files(name: str, root: Path, train: bool) -> tuple[Path, Path]:
    prefix = "train" if train else "t10k"
    raw = root / DATASETS[name][0] / "raw"
    return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


def _missing(name: str, root: Path, what: Path) -> ConfigError:
    return ConfigError("data.root", root, f"it holds no {DATASETS[name][0]} files ({what} is missing)",
                       "point data.root at the folder holding them, or add data.download=true to fetch them")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (uint8 data): ``(N,)`` labels or ``(N, H, W)`` images."""
    raw = bytearray(path.read_bytes())  # writable: torch takes the array without a warning
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _unpickle(path: Path) -> dict:
    """A CIFAR batch, through the allow-list unpickler (only numpy's array reconstruction may run)."""
    from experiments.run.unpickle import load_data_pickle

    return load_data_pickle(path)


def read_split(name: str, root: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, H, W) or (N, H, W, 3), labels int64 (N,))`` of the official train or test split."""
    root = Path(root)
    if name == "cifar10":
        files = [root / CIFAR_DIR / f for f in (CIFAR_TRAIN if train else CIFAR_TEST)]
        for path in files:
            if not path.is_file():
                raise _missing(name, root, path)
        batches = [_unpickle(path) for path in files]
        data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels
    images, labels = _idx_files(name, root, train)
    for path in (images, labels):
        if not path.is_file():
            raise _missing(name, root, path)
    return read_idx(images), read_idx(labels).astype(np.int64)


def official_labels(name: str, root: str | Path) -> dict[str, list[int]]:
    """The labels of the official train and test splits (for validation's split sizes)."""
    root = Path(root)
    if name == "cifar10":
        return {part: [int(y) for f in files for y in _unpickle(root / CIFAR_DIR / f)["labels"]]
                for part, files in (("train", CIFAR_TRAIN), ("test", CIFAR_TEST))}
    return {part: read_idx(_idx_files(name, root, part == "train")[1]).tolist() for part in ("train", "test")}


def present(name: str, root: str | Path) -> bool:
    """Whether the official files are under ``root`` (nothing to download)."""
    root = Path(root)
    if name == "cifar10":
        return all((root / CIFAR_DIR / f).is_file() for f in CIFAR_TRAIN + CIFAR_TEST)
    return all(p.is_file() for train in (True, False) for p in _idx_files(name, root, train))
