"""TensorBoard tells the story of a run: a custom-scalars layout, figures at every validation epoch, learning tags
first, and an HParams table of final metrics (diagnostics/dashboard.py, run/tensorboard.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.diagnostics.dashboard import dashboard_layout
from experiments.run.layout import RunDir
from experiments.run.tensorboard import LEARNING_GROUPS, SECTION
from experiments.train import train

#: 3 steps x 2 epochs of a 4-channel cnn, every step measured, so that each validation epoch has new data to draw
SHORT = ["model.width=4", "trainer.max_epochs=2", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1",
         "+trainer.limit_test_batches=1", "diagnostics.gradients.interval=1", "diagnostics.activations.interval=1",
         "trainer.log_every_n_steps=1", "print_config=false"]


def charts(layout: dict) -> dict[str, list[str]]:
    return {title: chart[1] for category in layout.values() for title, chart in category.items()}


def matched(regexes: list[str], tags: list[str]) -> list[list[str]]:
    """What each custom-scalars regex selects (the plugin matches from the start of a tag)."""
    return [sorted(t for t in tags if re.match(rx, t)) for rx in regexes]


def test_the_layout_follows_the_task_monitor_and_the_diagnostics_that_are_on() -> None:
    layout = dashboard_layout("val/psnr")
    assert list(layout) == ["learning"]
    tags = ["train/loss_step", "train/loss_epoch", "val/loss", "train/psnr", "val/psnr", "val/psnr_best"]
    assert matched(charts(layout)["psnr: train vs val"], tags) == [["train/psnr"], ["val/psnr"]]
    assert matched(charts(layout)["loss: train vs val"], tags) == [["train/loss_epoch"], ["val/loss"]]

    full = dashboard_layout("val/miou", gradient_layers=["enc.0", "head"], gap=True, learning_rate=True,
                            activations=True)
    assert list(full) == ["learning", "gradient flow", "activations"]
    assert list(full["learning"]) == ["loss: train vs val", "miou: train vs val",
                                      "train-val gap (positive: better on train)", "learning rate"]
    shown = ["~grad_norm/enc.0", "~grad_norm/enc.00", "~grad_norm/head", "~gap/loss", "~gap/miou", "train/lr-SGD"]
    grads = charts(full)["gradient norm per layer, input -> output (2 layers)"]
    assert matched(grads, shown) == [["~grad_norm/enc.0"], ["~grad_norm/head"]]  # exact names, depth order
    assert matched(charts(full)["learning rate"], shown) == [["train/lr-SGD"]]


def test_a_run_writes_its_layout_figures_each_validation_epoch_and_an_hparams_table(make_cfg) -> None:
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.custom_scalar import metadata as custom_scalars
    from tensorboard.plugins.hparams import metadata as hparams_metadata
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = make_cfg([*SHORT, "activation=sigmoid"])
    record = train(cfg)
    run = RunDir(cfg.run_dir)
    folder = run.tensorboard_events()
    assert folder is not None and folder.parent == run.tensorboard and folder.name.startswith("activation=sigmoid,")

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    scalars = tags["scalars"]
    # learning curves (the learning rate among them) under their own names, everything else after them
    assert {"train/loss_epoch", "val/acc", "~test/acc", "~epoch"} <= set(scalars)
    assert any(t.startswith("train/lr-") for t in scalars)
    assert all(t.split("/")[0] in LEARNING_GROUPS or t.startswith(SECTION) for t in scalars + tags["images"])

    # figures at initialisation and after each of the 2 validation epochs (steps 3 and 6), also as PNGs
    assert [e.step for e in events.Images("~diagnostics/gradient_flow")] == [0, 3, 6]
    assert [e.step for e in events.Images("~diagnostics/activations")] == [3, 6]
    assert run.figure("diagnostics/activations", 6).is_file()

    # the custom-scalars layout: every chart selects the tags it names
    layout = layout_pb2.Layout.FromString(events.Tensors(custom_scalars.CONFIG_SUMMARY_TAG)[0].tensor_proto
                                          .string_val[0])
    assert [c.title for c in layout.category] == ["learning", "gradient flow", "activations"]
    chart = {c.title: list(c.multiline.tag) for category in layout.category for c in category.chart}
    assert matched(chart["loss: train vs val"], scalars) == [["train/loss_epoch"], ["val/loss"]]
    assert matched(chart["acc: train vs val"], scalars) == [["train/acc"], ["val/acc"]]
    layers = record["gradient_flow"]["layers"]
    grads = chart[f"gradient norm per layer, input -> output ({len(layers)} layers)"]
    assert matched(grads, scalars) == [[f"~grad_norm/{layer}"] for layer in layers]
    assert matched(chart["saturated units per layer (sigmoid, tanh)"], scalars)[0]  # sigmoid saturates; no dead
    assert not matched(chart["dead units per layer (ReLU family)"], scalars)[0]

    # HParams: the first five metric columns as a reader wants them, with the final values the record holds
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content[hparams_metadata.EXPERIMENT_TAG]).experiment
    columns = {m.display_name: m.name.tag for m in experiment.metric_infos}
    assert list(columns)[:5] == ["test/acc", "val/acc", "train/acc", "params", "wall_time_s"]
    assert set(columns) >= {"test/loss", "val/loss", "train/loss", "val/best_acc"}
    assert events.Scalars(columns["test/acc"])[-1].value == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    assert events.Scalars(columns["params"])[-1].value == record["params"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content[hparams_metadata.SESSION_START_INFO_TAG])
    hparams = start.session_start_info.hparams
    assert hparams["activation"].string_value == "sigmoid"
    assert hparams["optimizer.lr"].number_value == pytest.approx(cfg.optimizer.lr) and "lr" not in hparams
    assert not any(h.differs for h in experiment.hparam_infos)  # a single run: nothing swept


def test_a_resumed_run_continues_its_tensorboard_run(tmp_path: Path) -> None:
    """The name is found on disk, not recomputed from the resume command (whose overrides are only resume=true)."""
    from experiments.run.tensorboard import RunTensorBoardLogger

    first = RunTensorBoardLogger(str(tmp_path), version="model=fcn")
    first.log_metrics({"val/acc": 0.5}, step=1)
    first.finalize("success")
    again = RunTensorBoardLogger(str(tmp_path), version="defaults")
    assert again.log_dir == first.log_dir == str(tmp_path / "tensorboard" / "model=fcn")
