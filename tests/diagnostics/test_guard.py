"""Divergence guard: a diverging run stops with one sentence (layer, step, fix) and leaves a loadable good state."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments import build
from experiments.diagnostics.guard import DivergenceGuard, TrainingDiverged, first_nonfinite_output
from experiments.errors import ConfigError
from experiments.run.checkpoints import load_checkpoint
from experiments.validation import validate
from tests.conftest import TINY, run_cli
from tests.diagnostics.tiny import TinyTask, batches, fit


def test_huge_learning_rate_stops_the_cli_with_a_clear_message_and_a_loadable_checkpoint(make_cfg, tmp_path) -> None:
    overrides = ["optimizer=sgd", "optimizer.lr=1e4", "scheduler=none", "logger=csv"]
    result = run_cli("experiments.train", *TINY, *overrides, f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("error: "))
    for phrase in ("training diverged at step ", "of layer '", "optimizer.lr", "trainer.gradient_clip_val"):
        assert phrase in line, line

    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("TrainingDiverged")
    assert record["diverged"]["layer"] in line and f"step {record['diverged']['step']} " in line
    checkpoint = Path(record["diverged"]["checkpoint"])
    assert checkpoint == tmp_path / "run" / "checkpoints" / "last_good.ckpt" and str(checkpoint) in line

    state = load_checkpoint(checkpoint)["state_dict"]  # the safe loader: a last_good.ckpt is a real checkpoint
    task = build.build_task(make_cfg(overrides))
    task.load_state_dict(state)  # strict: every key of the real task is there
    assert all(torch.isfinite(p).all() for p in task.parameters())
    x, y = batches((8, 3, 32, 32), classes=5)
    task.eval()
    assert math.isfinite(task.loss_fn(task(x), y).item())


class PoisonedTask(TinyTask):
    """A loss that turns NaN from step ``at`` on, with finite weights: the guard must stop exactly there."""

    def __init__(self, network: nn.Module, at: int) -> None:
        super().__init__(network)
        self.at = at

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step >= self.at else loss


class WeightsAtStepStart(Callback):
    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.weights[trainer.global_step] = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_nan_loss_stops_at_that_step_and_saves_the_previous_verified_state(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2))
    guard, seen = DivergenceGuard(max_grad_norm=None, dirpath=str(tmp_path)), WeightsAtStepStart()
    with pytest.raises(TrainingDiverged) as info:
        fit(PoisonedTask(network, at=3), [seen, guard], batches(), steps=10)

    message = str(info.value)
    assert message.startswith("training diverged at step 3 (epoch 3): the loss is nan")  # one batch per epoch
    assert "the last good state (step 2)" in message and "lower optimizer.lr (now 0.1)" in message
    saved = torch.load(tmp_path / "last_good.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    for key, value in seen.weights[2].items():
        assert torch.equal(saved[key], value), key
    assert guard.run_summary()["diverged"]["step"] == 3


def test_first_nonfinite_output_names_the_overflowing_layer() -> None:
    network = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        network[1].weight.fill_(float("inf"))
    assert first_nonfinite_output(network, torch.ones(2, 4)) == "1"
    assert first_nonfinite_output(nn.Sequential(nn.Linear(4, 2)), torch.ones(2, 4)) is None
    assert torch.isinf(network[1].weight).all()  # the probe ran on a copy


def test_threshold_must_be_positive(make_cfg) -> None:
    with pytest.raises(ConfigError, match="diagnostics.guard.max_grad_norm=-1"):
        validate(make_cfg(["diagnostics.guard.max_grad_norm=-1"]))
    validate(make_cfg(["diagnostics.guard.max_grad_norm=null"]))
