"""Fake run directories with hand-written metrics.json of known values, shared by the report tests.

The canonical sweep is 2 groups x 3 seeds with sweep constants ``data=shapes`` and ``model.depth=20``:

* ``activation=relu``: test/acc 0.90, 0.92, 0.94 -> mean 0.92, std 0.02
* ``activation=gelu``: test/acc 0.80, 0.84, 0.88 -> mean 0.84, std 0.04
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

RELU_ACC = (0.90, 0.92, 0.94)
GELU_ACC = (0.80, 0.84, 0.88)
WALL = (10.0, 12.0, 14.0)


def write_run(
    run_dir: Path,
    metrics: dict[str, Any] | None,
    overrides: list[str] | None = None,
    hydra: bool = True,
) -> Path:
    """Create one run dir like Hydra + experiments.train would; ``metrics=None`` means no metrics.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if hydra:
        hydra_dir = run_dir / ".hydra"
        hydra_dir.mkdir(exist_ok=True)
        lines = "".join(f"- {o}\n" for o in overrides or [])
        (hydra_dir / "overrides.yaml").write_text(lines or "[]\n")
        (hydra_dir / "config.yaml").write_text("seed: 0\n")
        (hydra_dir / "hydra.yaml").write_text("hydra: {}\n")
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def completed_metrics(activation: str, seed: int, test_acc: float, wall: float) -> dict[str, Any]:
    """A full schema metrics.json whose history ends at the final metrics."""
    return {
        "status": "completed",
        "error": None,
        "task": "classification",
        "choices": {"model": "cnn", "activation": activation, "data": "shapes"},
        "overrides": [f"activation={activation}", f"seed={seed}", "data=shapes", "model.depth=20"],
        "seed": seed,
        "metrics": {
            "train/loss": 0.1,
            "train/acc": test_acc + 0.02,
            "val/loss": 0.2,
            "val/acc": test_acc + 0.01,
            "test/loss": 0.3,
            "test/acc": test_acc,
        },
        "params": 1000,
        "wall_time_s": wall,
        "vanishing_ratio": 1e-3 if activation == "relu" else None,
        "history": {
            "epoch": [0, 1, 2],
            "step": [10, 20, 30],
            "train/loss": [1.0, 0.5, 0.1],
            "val/loss": [1.1, None, 0.2],
            "val/acc": [0.5, 0.8, test_acc + 0.01],
        },
        "gradient_flow": {"layers": ["conv1", "conv2", "fc"], "grad_norm": [1e-4, 1e-2, 1.0]},
        "some_future_key": {"ignored": True},
    }


def make_sweep(root: Path, seeds: tuple[int, ...] = (1, 2, 3)) -> Path:
    """2 groups x 3 seeds, nested like ``multirun/<date>/<time>/<job>/`` with multirun.yaml on top."""
    sweep = root / "multirun" / "2026-11-26" / "10-00-00-123456"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    job = 0
    for activation, accs in (("relu", RELU_ACC), ("gelu", GELU_ACC)):
        for seed, acc, wall in zip(seeds, accs, WALL, strict=True):
            metrics = completed_metrics(activation, seed, acc, wall)
            write_run(sweep / str(job), metrics, metrics["overrides"])
            job += 1
    return sweep


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path)


def write_sweep(
    root: Path,
    arms: dict[tuple[str, ...], dict[int, dict[str, float] | None]],
    task: str = "classification",
) -> Path:
    """One completed run per (arm, seed) with the given final metrics; ``None`` metrics write a failed run.

    ``arms`` maps an arm's overrides (without the seed) to ``{seed: metrics}``; jobs are numbered in that
    order, so the first arm is the first of the sweep.
    """
    job = 0
    for overrides, by_seed in arms.items():
        for seed, metrics in by_seed.items():
            listed = [*overrides, f"seed={seed}"]
            record: dict[str, Any] = {"task": task, "overrides": listed, "seed": seed}
            if metrics is None:
                record.update(status="failed", error="RuntimeError: boom")
            else:
                record.update(status="completed", metrics=metrics)
            write_run(root / str(job), record, listed)
            job += 1
    return root
