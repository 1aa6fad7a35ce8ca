"""Shared fixtures: compose the real config tree with small budgets so tests train in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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

# What a test writes by default (runs, sweeps, the MLflow store under ``paths.output_dir``) goes to a temporary
# folder, not the checkout's outputs/; xdist workers and the CLIs the tests start inherit it. Tests of the default
# location itself unset it (tests/test_paths.py).
os.environ.setdefault("EXPERIMENTS_OUTPUT_DIR", tempfile.mkdtemp(prefix="experiments-tests-outputs-"))

#: paths that may appear in the checkout during a test session: caches and the environment, not results
CHECKOUT_NOISE = ("__pycache__", ".pytest_cache", ".ruff_cache", ".venv/", ".egg-info")


def checkout_files() -> set[str] | None:
    """The checkout's untracked and ignored paths (``git status``), or None outside a git checkout."""
    try:
        listed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--ignored"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if listed.returncode != 0:
        return None
    paths = {line[3:] for line in listed.stdout.splitlines() if line[:2] in ("??", "!!")}
    # git shows an ignored folder as one line: a new run inside an existing outputs/runs/ needs the files themselves
    paths |= {str(f.relative_to(REPO)) for f in (REPO / "outputs").rglob("*") if f.is_file()}
    return {p for p in paths if not any(noise in p for noise in CHECKOUT_NOISE)}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller (or a run without xdist) watches the checkout
        session.config.stash[_BEFORE] = checkout_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when tests left files in the checkout (outputs/, mlruns/, figures/ ...)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    before = session.config.stash.get(_BEFORE, None)
    after = checkout_files() if before is not None else None
    left = sorted((after or set()) - (before or set()))
    if left:
        shown = "\n  ".join(left[:20])
        print(f"\nerror: the tests left {len(left)} new path(s) in the checkout {REPO}:\n  {shown}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set[str] | None]()

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


def shared_run(tmp_path_factory: pytest.TempPathFactory, name: str, overrides: Sequence[str]) -> tuple[Path, dict]:
    """(run dir, metrics.json record) of a run trained once per test session however many xdist workers ask for it
    (the first trains it under a file lock in the session's shared temp dir), each caller given its own copy, so
    that what a test writes into its run dir (an evaluation, a probe, a corrupted checkpoint) stays its own."""
    import json
    import shutil

    from filelock import FileLock

    from experiments.train import train

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's dir, above the workers'
    source = shared / f"shared-{name}" / "run"
    with FileLock(str(shared / f"shared-{name}.lock")):
        if not (source / "metrics.json").is_file():
            cfg = compose(list(overrides))
            OmegaConf.set_struct(cfg, False)
            cfg.run_dir = str(source)
            assert train(cfg)["status"] == "completed"
    copy = tmp_path_factory.mktemp(name) / "run"
    shutil.copytree(source, copy)
    for record in [*copy.glob("*.json"), *copy.glob("*.yaml"), *copy.glob(".hydra/*.yaml")]:  # paths name the copy
        record.write_text(record.read_text().replace(str(source), str(copy)))
    return copy, json.loads((copy / "metrics.json").read_text())


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
