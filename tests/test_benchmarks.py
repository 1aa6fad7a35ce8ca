"""The accelerator benchmarks stay runnable: the classic suite reads every experiment's documented GPU size, and
throughput.py measures both paths end to end (slow: it trains twice)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from benchmarks import classic_suite

from tests.conftest import REPO


def test_the_classic_suite_runs_each_study_at_scale_gpu() -> None:
    for name in classic_suite.EXPERIMENTS:
        assert classic_suite.gpu_sizes(name) == ["scale=gpu"]
    # scale=gpu's budget widens plain_vs_residual's grid to the paper's depths: 3 depths x residual or plain
    assert classic_suite.grid("plain_vs_residual", ["scale=gpu"])["model.depth"] == "20,56,110"
    names = classic_suite.EXPERIMENTS
    jobs = {name: 3 * classic_suite.grid_size(name, classic_suite.gpu_sizes(name)) for name in names}
    assert jobs["plain_vs_residual"] == 18 and jobs["sigmoid_vs_relu"] == 15 and sum(jobs.values()) == 63


def test_the_classic_suite_shares_the_concurrent_jobs_in_proportion() -> None:
    jobs = {"a": 18, "b": 15, "c": 9, "d": 9, "e": 6, "f": 6}
    share = classic_suite.shares(jobs, 32)
    assert sum(share.values()) == 32 and share["a"] >= share["b"] >= share["c"] >= share["e"] >= 1
    assert classic_suite.shares(jobs, 2) == dict.fromkeys(jobs, 1)  # every sweep runs, one job at a time
    assert classic_suite.shares({"a": 2}, 32) == {"a": 2}  # never more at once than it has
    smoke = classic_suite.smoke_sizes(["scale=gpu", "data.train_size=50000", "model.depth=20,56,110"])
    assert "trainer=cpu" in smoke and "model.depth=20,56,110" in smoke and "data.train_size=50000" not in smoke
    assert "scale=gpu" in smoke


@pytest.mark.slow  # trains the framework and the plain loop on a few batches
def test_throughput_prints_both_paths_and_their_ratio() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--device", "cpu", "--steps", "2", "--warmup", "1", "--modes",
         "off", "--batch-size", "16", "--train-size", "64", "model.width=4"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "framework/plain" in result.stdout and "framework eager >= 0.95x plain eager" in result.stdout
