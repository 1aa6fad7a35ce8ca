"""The depth section's own pieces that need no training: its error curves and its figure (the trained runs and
their claims are the slow tests' business, in tests/test_classics.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.classics.sections import depth
from experiments.reporting.runs import COMPLETED, RunResult


def _run(tmp_path: Path, name: str, seed: int, train_acc: list[float], val_acc: list[float], test_acc: float):
    return RunResult(tmp_path / name, COMPLETED, seed=seed,
                     metrics={"train/acc": train_acc[-1], "val/acc": val_acc[-1], "test/acc": test_acc},
                     history={"epoch": list(range(len(train_acc))), "train/acc": train_acc, "val/acc": val_acc})


def test_error_curves_are_one_minus_accuracy_per_one_based_epoch(tmp_path: Path):
    runs = [_run(tmp_path, "a", 0, [0.25, 0.5], [0.2, 0.4], 0.4), _run(tmp_path, "b", 1, [0.75, 1.0], [0.6, 0.8], 0.8)]
    curves = depth.error_curves(runs, "train/acc")
    assert list(curves) == [1, 2]
    assert curves[1] == pytest.approx([0.75, 0.25])
    assert curves[2] == pytest.approx([0.5, 0.0])
    assert depth.train_error(runs[0]) == pytest.approx(0.5)
    assert depth.test_error(runs[1]) == pytest.approx(0.2)


def test_the_figure_draws_every_arm_under_its_readable_name(tmp_path: Path):
    runs = {label: [_run(tmp_path, f"{label}{s}", s, [0.3 + 0.1 * s, 0.5], [0.3, 0.45], 0.45) for s in (0, 1)]
            for label in depth.ARMS}
    assert set(depth.STYLE) == set(depth.ARMS) == {"plain-20", "plain-32", "ResNet-20", "ResNet-32"}
    drawn = depth.draw_curves(runs, tmp_path / "curves.png", chance_error=5 / 6)
    assert drawn is not None and drawn.stat().st_size > 10_000
    assert depth.draw_curves({label: [] for label in depth.ARMS}, tmp_path / "none.png", None) is None

