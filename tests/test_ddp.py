"""``trainer=ddp_cpu``: two gloo processes train end-to-end; rank 0 alone writes; metrics are reduced over ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.evaluate import evaluate
from tests.conftest import TINY, run_cli


@pytest.mark.slow  # two gloo processes (about 14 s on 2 cores); the DDP config rules are checked by default
def test_ddp_cpu_smoke_two_ranks_one_writer(tmp_path: Path) -> None:
    """The slow test below on a few batches (64 training images, 1 epoch, 2 ranks x 2 batches of 16): both gloo
    processes train, rank 0 alone reports and writes metrics.json, and the test metrics are reduced over ranks."""
    run, writes = tmp_path / "ddp", tmp_path / "writes.txt"
    result = run_cli("experiments.train", *TINY, "data.train_size=64", "data.val_size=32", "data.test_size=32",
                     "data.batch_size=16", "diagnostics=off", "trainer=ddp_cpu", f"hydra.run.dir={run}",
                     "+callbacks.writes._target_=tests.probes.WriteLog", f"+callbacks.writes.log={writes}",
                     timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run dir:") == 1  # only rank 0 reports

    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["world_size"] == 2
    assert len(record["history"]["epoch"]) == 1 and record["metrics"]["train/loss"] is not None
    assert (run / "train_ddp_process_1.log").is_file()  # the second process ran (Hydra's log of it)
    lines = [line.split() for line in writes.read_text().splitlines()]
    assert {rank for rank, what in lines if what == "setup"} == {"0", "1"}  # the write log ran in both ranks
    assert {rank for rank, what in lines if what == "metrics.json"} == {"0"}  # rank 1 never wrote the record
    single = evaluate(run, ckpt="best", accelerator="cpu")["metrics"]  # each rank tested 16 of the 32 images
    assert record["metrics"]["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)


@pytest.mark.slow
def test_ddp_cpu_trains_end_to_end_and_reduces_metrics(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    result = run_cli("experiments.train", *TINY, "trainer=ddp_cpu", "trainer.max_epochs=2", f"hydra.run.dir={run}",
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run dir:") == 1  # only rank 0 reports

    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["world_size"] == 2
    assert len(record["history"]["epoch"]) == 2 and record["metrics"]["train/loss"] is not None
    assert (run / "train_ddp_process_1.log").is_file()  # the second process ran (Hydra's log of it)
    writers = {p.name.split(".")[-2] for p in (run / "tensorboard").rglob("events.out.tfevents.*")}
    assert len(writers) == 1  # every event file comes from one process id: rank 0's

    # each rank tested half of the 64 test images; the reduced numbers equal one process testing all of them
    single = evaluate(run, ckpt="best", accelerator="cpu")["metrics"]
    assert record["metrics"]["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)
    assert record["metrics"]["test/loss"] == pytest.approx(single["test/loss"], rel=1e-5)
