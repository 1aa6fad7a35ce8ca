"""Run a real ``python -m experiments.train -m`` sweep with a tiny budget, for the sweep/launcher/TensorBoard tests.

Shared by several test modules, so it lives outside conftest (which belongs to the whole suite) and outside
any ``test_*`` module (importing one would re-collect its tests).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import TINY, run_cli

#: per job: 4 training steps over 2 epochs of a 4-channel cnn, so learning curves have two points and a job
#: takes a second or two (convolution cost grows with width squared: the default width 16 is ~10x slower)
SWEEP_TINY = [*TINY, "data.train_size=128", "trainer.max_epochs=2", "model.width=4"]
#: for sweeps whose test reads no diagnostics: skips the model card's tracing and the gradient probes
NO_DIAGNOSTICS = "diagnostics=off"


def run_sweep(
    sweep_dir: Path, *overrides: str, base: Sequence[str] = tuple(SWEEP_TINY), timeout: float = 300,
) -> subprocess.CompletedProcess:
    """``python -m experiments.train -m <base: tiny budget> hydra.sweep.dir=<sweep_dir> <overrides>``."""
    return run_cli("experiments.train", "-m", *base, f"hydra.sweep.dir={sweep_dir}", *overrides, timeout=timeout)


def job_records(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    """Job number -> that job's metrics.json (the default ``hydra.sweep.subdir`` is the job number)."""
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}


def explain(result: subprocess.CompletedProcess) -> str:
    """The end of a failed command's output, for assertion messages."""
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
