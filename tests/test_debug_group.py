"""The ``debug`` group: each option composes and trains, the run is marked debug in ``metrics.json``, overfitting a
batch drives its loss down, and the profiler writes its report into the run dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import compose
from experiments.errors import ConfigError
from experiments.train import train
from experiments.validation import validate

FEW = ["diagnostics=off", "logger=csv", "print_config=false"]


def test_fast_dev_run_runs_one_batch_per_split_and_is_marked(make_cfg) -> None:
    record = train(make_cfg([*FEW, "debug=fdr"]))
    assert record["status"] == "completed" and record["debug"] == "fdr"
    assert record["history"]["step"] == [1]  # one optimiser step
    assert {"test/acc", "test/loss"} <= set(record["metrics"])


def test_limit_runs_a_few_batches_of_each_split(make_cfg) -> None:
    record = train(make_cfg([*FEW, "debug=limit", "trainer.max_epochs=2"]))  # TINY's 1 epoch would win otherwise
    assert record["debug"] == "limit" and record["history"]["step"] == [4, 8]  # 4 of the 8 batches, 2 epochs


def test_overfit_drives_the_loss_of_one_batch_down(make_cfg) -> None:
    record = train(make_cfg([*FEW, "debug=overfit", "trainer.overfit_batches=1", "trainer.max_epochs=25",
                             "scheduler=none", "optimizer.lr=0.003"]))
    losses = record["history"]["train/loss"]
    assert record["debug"] == "overfit" and record["history"]["step"][-1] == 25  # one batch per epoch
    assert losses[-1] < 0.2 * losses[0], losses


@pytest.mark.parametrize("profiler", ["simple", "pytorch"])
def test_profiler_report_lands_in_the_run_dir(make_cfg, profiler: str) -> None:
    cfg = make_cfg([*FEW, "debug=profiler", f"trainer.profiler={profiler}", "trainer.limit_train_batches=2",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"])
    record = train(cfg)
    assert record["debug"] == "profiler"
    report = Path(cfg.run_dir) / "profiler" / "fit-profile.txt"
    expected = "training_step" if profiler == "simple" else "Self CPU time total"  # per hook; per operator
    assert report.is_file() and expected in report.read_text()


def test_a_debug_switch_set_by_hand_marks_the_run_too(make_cfg) -> None:
    assert train(make_cfg([*FEW, "+trainer.fast_dev_run=true"]))["debug"] == "trainer.fast_dev_run"


def test_an_unknown_profiler_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"^trainer.profiler=fast is invalid: the profilers are simple, advanced"):
        validate(compose(["debug=profiler", "trainer.profiler=fast"]))
