"""The ``callbacks`` group: checkpoint options, early stopping, EMA and SWA (whose averaged weights are the ones
checkpointed and tested, by their formulas), the rich progress bar, and the one-sentence errors for bad settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar

from experiments import build
from experiments.config import compose
from experiments.errors import ConfigError
from experiments.run.checkpoints import load_checkpoint, load_weights
from experiments.train import train
from experiments.validation import validate

#: 2 batches of 32 per epoch, no diagnostics: a few optimiser steps per test
FEW = ["data.train_size=64", "diagnostics=off", "logger=csv", "print_config=false"]


class WeightTrace(Callback):
    """Test probe: the network's raw parameters after every optimiser step and at the start of every epoch."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.epoch_starts: list[dict[str, torch.Tensor]] = []

    @staticmethod
    def _params(pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {f"network.{k}": v.detach().clone() for k, v in pl_module.network.named_parameters()}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.steps.append(self._params(pl_module))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_starts.append(self._params(pl_module))


def _trace(monkeypatch: pytest.MonkeyPatch) -> WeightTrace:
    """Run with a WeightTrace appended to the built callbacks (before resume state and signal handling)."""
    trace = WeightTrace()
    original = build.build_callbacks

    def with_trace(cfg, task, speed=None):
        callbacks = original(cfg, task, speed)
        at = [type(c).__name__ for c in callbacks].index("ResumeState")
        return [*callbacks[:at], trace, *callbacks[at:]]

    monkeypatch.setattr(build, "build_callbacks", with_trace)
    return trace


def _network(checkpoint: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(checkpoint)["state_dict"].items() if k.startswith("network.")}


def _assert_tested_weights(cfg, record: dict) -> None:
    """The record's test metrics are those of its best_checkpoint's weights, re-tested from the file."""
    task = build.build_task(cfg)
    load_weights(task, record["best_checkpoint"])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        default_root_dir=cfg.run_dir)  # the test's figures go to the run dir, not the checkout
    retested = trainer.test(task, datamodule=build.build_datamodule(cfg), verbose=False)[0]
    assert retested["test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    assert retested["test/loss"] == pytest.approx(record["metrics"]["test/loss"], rel=1e-5)


def test_checkpoint_options_top_k_monitor_and_no_last(make_cfg) -> None:
    cfg = make_cfg([*FEW, "trainer.max_epochs=3", "callbacks.model_checkpoint.monitor=val/loss",
                    "callbacks.model_checkpoint.save_top_k=2", "callbacks.model_checkpoint.save_last=false"])
    record = train(cfg)
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    kept = sorted(p.name for p in checkpoints.glob("*.ckpt"))
    losses = record["history"]["val/loss"]
    best_two = sorted(range(3), key=lambda e: losses[e])[:2]  # mode inferred from the name: min for a loss
    # no last.ckpt, no best.ckpt; init.ckpt (the weights before the first step) is every run's
    assert kept == sorted([*(f"best-epoch{e:03d}.ckpt" for e in best_two), "init.ckpt"])
    assert record["best_checkpoint"] == str(checkpoints / f"best-epoch{best_two[0]:03d}.ckpt")
    assert record["metrics"]["val/best_loss"] == pytest.approx(min(losses))


def test_early_stopping_stops_and_the_rich_bar_runs(make_cfg) -> None:
    # min_delta 1.0: accuracy can never improve that much, so the second epoch is one without improvement
    cfg = make_cfg([*FEW, "trainer.max_epochs=6", "callbacks=[default,early_stopping,rich_progress_bar]",
                    "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0",
                    "trainer.enable_progress_bar=true"])
    callbacks = build.build_callbacks(cfg, build.build_task(cfg))
    (stopper,) = [c for c in callbacks if isinstance(c, EarlyStopping)]
    assert (stopper.monitor, stopper.mode) == ("val/acc", "max")  # monitor: null -> the task's metric
    assert any(isinstance(c, RichProgressBar) for c in callbacks)
    record = train(cfg)
    assert record["status"] == "completed" and record["epochs"] == 2
    assert record["history"]["epoch"] == [0, 1]


def test_default_callbacks_are_the_best_checkpoint_last_checkpoint_and_lr_monitor(make_cfg) -> None:
    cfg = make_cfg(["print_config=false"])
    callbacks = build.build_callbacks(cfg, build.build_task(cfg))
    best, last = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    assert (best.filename, best.monitor, best.mode, best.save_last) == ("best", "val/acc", "max", False)
    assert (last.filename, last.monitor) == ("last", None)  # the exact-resume checkpoint after every epoch
    assert callbacks[0] is best  # trainer.checkpoint_callback
    assert any(isinstance(c, LearningRateMonitor) for c in callbacks)
    names = [type(c).__name__ for c in callbacks]
    assert names.index("LearningRateMonitor") < names.index("ResumeState") < names.index("GracefulStop")
    without_logger = make_cfg(["logger=[]"])
    assert not any(isinstance(c, LearningRateMonitor) for c in build.build_callbacks(without_logger, build.build_task(
        without_logger)))


def test_ema_checkpoints_and_tests_the_exponential_average(make_cfg, monkeypatch) -> None:
    trace = _trace(monkeypatch)
    cfg = make_cfg([*FEW, "trainer.max_epochs=2", "callbacks=[default,ema]", "callbacks.ema.decay=0.5"])
    record = train(cfg)
    assert record["averaged"] == "ema" and record["best_checkpoint"].endswith("checkpoints/averaged.ckpt")
    # a_1 = w_1, a_t = d a_(t-1) + (1 - d) w_t after every optimiser step (torch's get_ema_avg_fn)
    expected = dict(trace.steps[0])
    for weights in trace.steps[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * weights[k] for k in expected}
    averaged = _network(Path(record["best_checkpoint"]))
    assert len(trace.steps) == 4
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value)
    assert any(not torch.equal(averaged[k], trace.steps[-1][k]) for k in expected)  # not the raw weights
    # last.ckpt keeps the raw weights beside the average, so that resume continues training the raw ones
    last = load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.ckpt")
    for name, value in trace.steps[-1].items():
        torch.testing.assert_close(last["current_model_state"][name], value)
    _assert_tested_weights(cfg, record)


def test_swa_checkpoints_and_tests_the_equal_average(make_cfg, monkeypatch) -> None:
    trace = _trace(monkeypatch)
    # swa_epoch_start=2 (1-based): Lightning averages the weights at the start of epochs 2 and 3 (0-based 1, 2),
    # then, the network having BatchNorm, spends one more forward-only epoch recomputing its statistics
    cfg = make_cfg([*FEW, "trainer.max_epochs=3", "callbacks=[default,swa]", "callbacks.swa.swa_epoch_start=2",
                    "callbacks.swa.swa_lrs=0.01"])
    record = train(cfg)
    assert record["averaged"] == "swa" and record["best_checkpoint"].endswith("checkpoints/averaged.ckpt")
    starts = trace.epoch_starts
    expected = {k: (starts[1][k] + starts[2][k]) / 2 for k in starts[1]}
    averaged = _network(Path(record["best_checkpoint"]))
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value)
    assert any(not torch.equal(averaged[k], trace.steps[-3][k]) for k in expected)  # not the last trained weights
    _assert_tested_weights(cfg, record)


@pytest.mark.parametrize(("overrides", "message"), [
    (["callbacks=[default,ema,swa]"], r"^callbacks=\[\.\.\.,ema,swa\] is invalid: two weight averages"),
    (["callbacks=[default,early_stopping,swa]"], r"^callbacks=.* is invalid: SWA swaps its average in only when"),
    (["callbacks.model_checkpoint.monitor=test/acc"], r"^callbacks.model_checkpoint.monitor=test/acc is invalid"),
    (["callbacks=[default,early_stopping]", "callbacks.early_stopping.mode=up"],
     r"^callbacks.early_stopping.mode=up is invalid: the mode is min or max"),
    (["callbacks.model_checkpoint.save_top_k=-2"], r"^callbacks.model_checkpoint.save_top_k=-2 is invalid"),
    (["callbacks=[default,swa]", "callbacks.swa.swa_epoch_start=9", "trainer.max_epochs=8"],
     r"^callbacks.swa.swa_epoch_start=9 is invalid: averaging starts at an epoch number from 1 to"),
    (["callbacks=[default,swa]", "callbacks.swa.swa_lrs=0"], r"^callbacks.swa.swa_lrs=0 is invalid"),
    (["callbacks=[default,ema]", "callbacks.ema.decay=1.5"], r"^callbacks.ema.decay=1.5 is invalid"),
    (["callbacks=[default,rich_progress_bar]", "trainer.enable_progress_bar=false"],
     r"^trainer.enable_progress_bar=False is invalid: callbacks.rich_progress_bar is a progress bar"),
])
def test_bad_callback_settings_are_one_sentence(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose(overrides))
