"""Shared fixtures: compose the real config tree with small budgets so tests train in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from experiments.config import compose

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: one torch thread each (inherited by the CLIs the tests start), since
    # oversubscribed OpenMP threads spin and run several times slower than one thread per core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

#: keep every test run tiny; a test adds its own overrides after these
TINY = [
    "data.train_size=256",
    "data.val_size=64",
    "data.test_size=64",
    "data.batch_size=32",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(["model=resnet", ...], tiny=True)`` -> a composed config whose run dir is in tmp_path."""

    def make(overrides: Sequence[str] = (), tiny: bool = True, run_dir: Path | None = None) -> DictConfig:
        cfg = compose([*(TINY if tiny else []), *overrides])
        OmegaConf.set_struct(cfg, False)
        cfg.run_dir = str(run_dir or tmp_path / "run")
        return cfg

    return make


def run_cli(module: str, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` as a user would, capturing output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
        env=env,
    )


#: the files whose tests take longest together (pytest --durations=0, summed per file): scheduled first, so that
#: with ``--dist loadfile`` the two workers do not end with one of them alone on a long file
LONG_FILES = (
    "test_training.py", "test_config.py", "test_norm.py", "test_sweeps.py", "test_segmentation_training.py",
    "test_resume.py", "test_tensorboard_server.py", "test_transfer.py", "test_zoo.py", "test_autoencoder.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (a stable sort: the order within a file, and of the other files, is kept)."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
