"""Diagnostics inside real training runs: TensorBoard tags, metrics.json keys, run-dir files, no side effects."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.run.layout import RunDir
from experiments.run.tensorboard import tensorboard_tag as tb
from experiments.train import train

SHORT = ["trainer.max_epochs=2", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1",
         "+trainer.limit_test_batches=1"]


def test_full_diagnostics_fill_tensorboard_metrics_json_and_the_run_dir(make_cfg) -> None:
    small_landscape = [f"diagnostics.landscape.{k}={v}" for k, v in (
        ("images", 32), ("curvature_images", 32), ("batch_size", 32), ("grid", 3), ("slice_points", 5),
        ("interpolation_points", 3), ("eigenvalues", 2), ("lanczos_iters", 4), ("trace_samples", 2))]
    cfg = make_cfg([*SHORT, "diagnostics=full", "diagnostics.gradients.interval=3", *small_landscape])
    record = train(cfg)
    assert record["metrics"]["train/top_eig"] > 0  # the landscape ran after the test (its own tests: test_landscape_*)
    run = Path(cfg.run_dir)

    events = EventAccumulator(str(RunDir(run).tensorboard_events()),
                              size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    scalars, histograms = set(tags["scalars"]), set(tags["histograms"])
    conv, act = "encoder.stages.0.convs.0.0", "encoder.stages.0.convs.0.2"
    for tag in (f"grad_norm/{conv}", f"grad_ratio/{conv}", "grad_norm/classifier.4", "diagnostics/vanishing_ratio",
                f"act_mean/{act}", f"act_std/{act}", f"act_dead/{act}", "gap/loss", "gap/acc"):
        assert tb(tag) in scalars, tag  # TensorBoard files diagnostics after the learning curves: ~grad_norm/...
    for tag in (f"hist_act/{act}", f"hist_weight/{conv}", f"hist_grad/{conv}"):
        assert tb(tag) in histograms, tag
    assert tb("diagnostics/gradient_flow") in tags["images"]
    # the features diagnostic: kernels from step 0, their change since then from the first validation epoch on
    assert [e.step for e in events.Images(tb(f"diagnostics/kernels/{conv}"))][0] == 0
    changes = [e.step for e in events.Images(tb(f"diagnostics/kernel_change/{conv}"))]
    assert changes and 0 not in changes
    assert any(t.startswith("model_summary") for t in tags["tensors"])
    assert [e.step for e in events.Scalars(tb("diagnostics/vanishing_ratio"))] == [0, 3, 6]

    record = json.loads((run / "metrics.json").read_text())
    flow = record["gradient_flow"]
    assert flow["layers"][0] == conv and len(flow["layers"]) == len(flow["grad_norm"]) == 5
    assert record["vanishing_ratio"] == pytest.approx(flow["grad_norm"][0] / flow["grad_norm"][-1])
    assert events.Scalars(tb("diagnostics/vanishing_ratio"))[0].value == pytest.approx(record["vanishing_ratio"])
    assert record["activation_stats"]["layers"][0] == act and record["activation_stats"]["step"] == 0
    history, gaps = record["history"], record["overfitting"]
    assert gaps["epoch"] == [0, 1]
    for i in range(2):  # the train side is measured in eval mode on the training images (diagnostics/overfitting.py)
        assert gaps["gap/loss"][i] == pytest.approx(history["val/loss"][i] - gaps["train_eval/loss"][i], abs=1e-6)
        assert gaps["gap/acc"][i] == pytest.approx(gaps["train_eval/acc"][i] - history["val/acc"][i], abs=1e-6)
        assert 0.0 <= gaps["train_eval/acc"][i] <= 1.0
    assert [e.value for e in events.Scalars(tb("gap/loss"))] == pytest.approx(gaps["gap/loss"], abs=1e-6)

    table = json.loads((run / "model_summary.json").read_text())
    assert table["total_params"] == record["params"] and table["total_flops"] == record["flops"] > 0
    assert record["receptive_field"] == 22  # three stages of one 3x3 conv + 2x2 max pool
    assert "Total FLOPs" in (run / "model_summary.txt").read_text()
    assert (run / "model_summary.md").read_text().startswith("| Layer |")


def test_diagnostics_observe_without_changing_the_run(make_cfg, tmp_path: Path) -> None:
    """Same seed, same data: identical losses with and without diagnostics (they draw no random numbers, and the
    summary's forward pass runs in eval mode); with the CSV logger the scalars still arrive."""
    records = {}
    for setting in ("off", "default"):
        cfg = make_cfg([*SHORT, "trainer.max_epochs=1", "scheduler=none", "logger=csv", f"diagnostics={setting}",
                        "diagnostics.gradients.interval=2" if setting == "default" else "seed=0"],
                       run_dir=tmp_path / setting)
        records[setting] = train(cfg)
    for key in ("train/loss", "val/loss", "test/loss"):
        assert records["default"]["metrics"][key] == pytest.approx(records["off"]["metrics"][key], rel=1e-6)
    assert "vanishing_ratio" not in records["off"] and not (tmp_path / "off" / "model_summary.txt").exists()

    with open(tmp_path / "default" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("grad_norm/encoder.stages.0.convs.0.0")]
    assert [int(r["step"]) for r in logged] == [0, 2]
    assert (tmp_path / "default" / "model_summary.txt").is_file()
