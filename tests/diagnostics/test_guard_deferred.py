"""The divergence guard's deferred check (the default on CUDA, forced here on the CPU): each check's numbers are read
at the next one so the GPU never waits, and the outcome (step, message, layer, last good state) is the immediate
check's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.diagnostics.guard import DivergenceGuard, TrainingDiverged
from tests.diagnostics.tiny import TinyTask, batches, fit


class ScaledTask(TinyTask):
    """From step ``at`` on, the loss is multiplied by ``factor`` (NaN: a non-finite loss; 1e6: exploding gradients)."""

    def __init__(self, network: nn.Module, at: int, factor: float) -> None:
        super().__init__(network)
        self.at, self.factor = at, factor

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * self.factor if self.global_step >= self.at else loss


class WeightsAtStepStart(Callback):
    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.weights[trainer.global_step] = {k: v.clone() for k, v in pl_module.state_dict().items()}


def diverge(tmp_path: Path, deferred: bool, at: int, factor: float, steps: int = 10
            ) -> tuple[str, dict, DivergenceGuard]:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2))
    guard = DivergenceGuard(max_grad_norm=1e4, dirpath=str(tmp_path / str(deferred)), deferred=deferred)
    seen = WeightsAtStepStart()
    with pytest.raises(TrainingDiverged) as info:
        fit(ScaledTask(network, at=at, factor=factor), [seen, guard], batches(), steps=steps)
    saved = torch.load(tmp_path / str(deferred) / "last_good.ckpt", map_location="cpu", weights_only=False)
    for key, value in seen.weights[at - 1].items():  # the state the last sound step ran with
        assert torch.equal(saved["state_dict"][key], value), key
    return str(info.value), guard.run_summary()["diverged"], guard


@pytest.mark.parametrize("factor, what", [(float("nan"), "the loss is nan"), (1e6, "above max_grad_norm=1e+04")])
def test_a_deferred_check_stops_with_the_immediate_checks_step_message_and_good_state(tmp_path, factor, what) -> None:
    immediate, immediate_record, _ = diverge(tmp_path, deferred=False, at=3, factor=factor)
    deferred, deferred_record, _ = diverge(tmp_path, deferred=True, at=3, factor=factor)
    assert immediate.startswith("training diverged at step 3 (epoch 3): ") and what in immediate
    assert "the last good state (step 2)" in immediate
    # the same sentence, save where the good state was written and the learning rate (unchanged: plain SGD)
    assert deferred.replace("/True/", "/False/") == immediate
    assert deferred_record["layer"] == immediate_record["layer"] and deferred_record["step"] == 3


def test_a_divergence_on_the_last_step_is_caught_when_training_ends(tmp_path) -> None:
    message, record, _ = diverge(tmp_path, deferred=True, at=4, factor=float("nan"), steps=5)
    assert message.startswith("training diverged at step 4 ") and record["step"] == 4


def test_a_sound_run_keeps_the_state_of_its_last_check(tmp_path) -> None:
    torch.manual_seed(0)
    guard = DivergenceGuard(dirpath=str(tmp_path), deferred=True)
    task = TinyTask(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)))
    fit(task, [guard], batches(), steps=5)
    assert guard.run_summary() == {} and guard._good_step == 4 and guard._pending is None
