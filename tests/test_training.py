"""End-to-end training through the real Trainer: learning happens, run dirs are complete, events read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.config import conf_dir
from experiments.run.layout import RunDir
from experiments.train import train


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


#: options that only go together (a reconstruction loss needs the model that reconstructs): their own runs
RECONSTRUCTION = {"model": ("autoencoder",), "loss": ("pixel_mse", "pixel_bce")}
#: the torchvision/timm bridge builds standard architectures; tests/test_zoo.py trains those under every switch
ZOO = {"model": ("torchvision", "timm")}


def grid_covering_every_option() -> list[list[str]]:
    """Zip the groups' options (cycling the shorter lists) so every option appears in at least one run."""
    groups = ["activation", "pooling", "init", "loss", "optimizer", "scheduler", "model", "logger"]
    lists = {g: [o for o in options(g) if o not in RECONSTRUCTION.get(g, ()) + ZOO.get(g, ())] for g in groups}
    runs = []
    for i in range(max(len(v) for v in lists.values())):
        choice = {g: lists[g][i % len(lists[g])] for g in groups}
        if choice["model"] == "resnet":
            choice["pooling"] = "stride"  # the only pooling a ResNet takes; the others run with cnn
        overrides = [f"{g}={o}" for g, o in choice.items()]
        if choice["model"] == "resnet":
            overrides += ["model.depth=8", "model.width=4"]
        runs.append(overrides)
    runs += [[f"model={model}", f"loss={loss}"] for model in RECONSTRUCTION["model"] for loss in RECONSTRUCTION["loss"]]
    covered = {g: {r for run in runs for r in run if r.startswith(g + "=")} for g in groups}
    assert all(len(covered[g]) == len(options(g)) - len(ZOO.get(g, ())) for g in groups)
    return runs


@pytest.mark.parametrize("overrides", grid_covering_every_option(), ids=lambda o: ",".join(o[:3]))
def test_every_option_trains_a_few_steps(make_cfg, overrides) -> None:
    cfg = make_cfg([*overrides, "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1",
                    "+trainer.limit_test_batches=1"])
    record = train(cfg)
    assert record["status"] == "completed"
    assert record["metrics"]["train/loss"] is not None


def test_training_learns_far_above_chance(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(["data.train_size=4000", "data.val_size=500", "data.test_size=500", "data.batch_size=64",
                    "trainer.max_epochs=6"])
    record = train(cfg)
    chance = 1 / cfg.data.num_classes
    assert record["metrics"]["val/acc"] > 0.8 > 4 * chance
    assert record["metrics"]["test/acc"] > 0.8

    run = Path(cfg.run_dir)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["status"] == "completed"
    assert saved["params"] > 0 and saved["wall_time_s"] > 0
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert key in saved["metrics"]
    assert len(saved["history"]["val/acc"]) == 6
    assert saved["history"]["val/acc"][-1] > saved["history"]["val/acc"][0]
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()

    events = EventAccumulator(str(RunDir(run).tensorboard_events()), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "~test/acc"):  # ~: after
        assert tag in scalars, (tag, scalars)
    assert any(tag.startswith("train/lr-") for tag in scalars)  # TensorBoard files the LR monitor under train/
    assert events.Scalars("val/acc")[-1].value == pytest.approx(saved["history"]["val/acc"][-1], abs=1e-6)


def test_hparams_carry_group_choices_and_final_metrics(make_cfg) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.plugins.hparams.metadata import PLUGIN_NAME

    cfg = make_cfg(["activation=tanh", "optimizer=momentum", "+trainer.limit_train_batches=2"])
    record = train(cfg)
    events = EventAccumulator(str(RunDir(cfg.run_dir).tensorboard_events()), size_guidance={"tensors": 0})
    events.Reload()
    content = events.PluginTagToContent(PLUGIN_NAME)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {k: v.string_value or v.number_value for k, v in start.session_start_info.hparams.items()}
    assert hparams["seed"] == 0 and hparams["optimizer.lr"] == pytest.approx(cfg.optimizer.lr)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.display_name: m.name.tag for m in experiment.experiment.metric_infos}
    assert {"val/acc": "~final/val/acc", "test/acc": "~final/test/acc", "train/loss": "~final/train/loss"}.items() \
        <= metric_tags.items()
    assert record["metrics"]["test/acc"] is not None


@pytest.mark.slow
def test_the_default_run_reaches_the_accuracy_the_readme_states(make_cfg) -> None:
    """README: the default run (cnn + relu on shapes, 8 epochs) reaches about 97 % validation accuracy."""
    cfg = make_cfg(["trainer.enable_progress_bar=false"], tiny=False)
    record = train(cfg)
    assert record["status"] == "completed" and record["epochs"] == 8
    assert record["metrics"]["val/acc"] >= 0.95 and record["metrics"]["test/acc"] >= 0.95
