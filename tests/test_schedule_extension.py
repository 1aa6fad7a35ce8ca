"""Extending a run (``ckpt_path=<run>/checkpoints/last.ckpt trainer.max_epochs=<more>``): every schedule continues
from the checkpoint's rate for the new length and says so in one line, instead of a one-cycle traceback or a cosine
that climbs back towards its peak (tasks/schedules.py)."""

from __future__ import annotations

import csv
import functools
import math
from pathlib import Path

import pytest
import torch

from experiments.errors import ConfigError
from experiments.run.checkpoints import load_checkpoint
from experiments.tasks import schedules
from experiments.train import train

#: 8 steps an epoch; the first run trains one epoch, the extension two more
SMALL = ["data.train_size=128", "data.val_size=32", "data.test_size=32", "data.batch_size=16", "diagnostics=off",
         "logger=csv", "print_config=false", "trainer.log_every_n_steps=1"]
STEPS = 8


def _logged_lrs(run: Path) -> list[float]:
    """The rate of every training step, as the learning-rate monitor wrote it to the CSV log."""
    with (run / "csv" / "metrics.csv").open() as handle:
        return [float(row["lr-AdamW"]) for row in csv.DictReader(handle) if row.get("lr-AdamW")]


@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "onecycle"])
def test_a_finished_run_extended_by_two_epochs_continues_without_climbing(make_cfg, tmp_path: Path, capsys,
                                                                          scheduler: str) -> None:
    first = make_cfg([*SMALL, f"scheduler={scheduler}"], run_dir=tmp_path / "first")
    assert train(first)["status"] == "completed"
    before = _logged_lrs(tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)[schedules.RECORD_KEY]["total_steps"] == STEPS
    capsys.readouterr()

    extended = make_cfg([*SMALL, f"scheduler={scheduler}", "trainer.max_epochs=3", f"ckpt_path={last}"],
                        run_dir=tmp_path / "extended")
    record = train(extended)
    assert record["status"] == "completed" and record["epochs"] == 3
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("schedule:")]
    assert len(notes) == 1, notes
    assert f"{scheduler if scheduler != 'none' else 'constant rate'}" in notes[0]
    assert f"over {STEPS} steps (at step {STEPS}) continued for a run of {3 * STEPS} steps" in notes[0]
    after = _logged_lrs(tmp_path / "extended")
    assert len(after) == 2 * STEPS  # the two added epochs, every step logged
    assert max(after) <= before[-1] * (1 + 1e-9), (before[-1], after)  # never back above the last rate trained with
    assert after[0] == pytest.approx(before[-1], rel=1e-6)  # it goes on from there
    if scheduler == "cosine":  # a fresh annealing down to the floor (eta_min=0) over the added steps
        assert after == sorted(after, reverse=True) and after[-1] < 0.05 * after[0]
    if scheduler == "onecycle":
        assert "already at the floor" in notes[0]  # a finished one-cycle is at its floor: said, not hidden
    ext = load_checkpoint(tmp_path / "extended" / "checkpoints" / "last.ckpt")
    assert ext[schedules.RECORD_KEY]["total_steps"] == 3 * STEPS and ext["global_step"] == 3 * STEPS


def _optimizer(lr: float = 0.01) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _checkpoint(factory, total: int, steps: int, lr: float = 0.01) -> dict:
    """What Lightning would save after ``steps`` optimiser steps of ``factory``'s schedule over ``total`` steps."""
    optimizer = _optimizer(lr)
    scheduler, record, _ = schedules.build(factory, optimizer, total)
    for _ in range(steps):
        record["last_lrs"] = [g["lr"] for g in optimizer.param_groups]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return {"optimizer_states": [optimizer.state_dict()], "global_step": steps, schedules.RECORD_KEY: record,
            "lr_schedulers": [scheduler.state_dict()] if scheduler is not None else []}


def _run(factory, checkpoint: dict, total: int, lr: float = 0.01) -> tuple[list[float], str | None, object]:
    """Restore ``checkpoint`` the way Lightning does (build, optimiser state, scheduler state) and step to ``total``."""
    optimizer = _optimizer(lr)
    scheduler, _, note = schedules.build(factory, optimizer, total, checkpoint)
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    if scheduler is not None and checkpoint["lr_schedulers"]:
        scheduler.load_state_dict(checkpoint["lr_schedulers"][0])
    rates = []
    for _ in range(total - checkpoint["global_step"]):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return rates, note, scheduler


def test_step_milestones_become_fractions_of_the_new_length_and_applied_decays_stay() -> None:
    step = functools.partial(schedules.step, milestones=[0.5, 0.75], gamma=0.1)
    rates, note, _ = _run(step, _checkpoint(step, total=40, steps=10), total=80)  # no decay yet: both at 40 and 60
    assert rates[0] == pytest.approx(0.01) and rates[29] == pytest.approx(0.01)
    assert rates[30] == pytest.approx(0.001) and rates[50] == pytest.approx(0.0001)
    assert "x0.1 at step 40, 60" in note
    rates, note, _ = _run(step, _checkpoint(step, total=40, steps=35), total=80)  # both decays applied: kept
    assert rates == pytest.approx([1e-4] * 45) and "no decay left" in note
    rates, _, _ = _run(step, _checkpoint(step, total=40, steps=25), total=80)  # one applied: the one at 60 is owed
    assert rates[0] == pytest.approx(0.001) and rates[34] == pytest.approx(0.001) and rates[35] == pytest.approx(1e-4)


def test_onecycle_still_warming_up_goes_on_to_the_peak_at_the_new_warm_up_end() -> None:
    onecycle = functools.partial(schedules.onecycle, pct_start=0.25, div_factor=25.0)
    checkpoint = _checkpoint(onecycle, total=40, steps=4)  # warm-up ends at step 9 of 40, 19 of 80
    at_checkpoint = checkpoint["optimizer_states"][0]["param_groups"][0]["lr"]
    rates, note, _ = _run(onecycle, checkpoint, total=80)
    assert rates[0] == pytest.approx(at_checkpoint) and "warm-up" in note
    peak = rates.index(max(rates)) + 4
    assert peak == 19 and max(rates) == pytest.approx(0.01)  # the configured rate, at the new warm-up's end
    assert rates[-1] == pytest.approx(0.01 / 25 / 1e4, rel=0.05)  # one-cycle's floor at the end
    assert all(a <= b for a, b in zip(rates, rates[1:15], strict=False))  # rising without a jump


def test_cosine_annealing_past_its_end_is_what_is_fixed() -> None:
    """Without the continuation the restored cosine goes on past its end and climbs back (the reported bug)."""
    cosine = functools.partial(schedules.cosine, eta_min=0.0)
    checkpoint = _checkpoint(cosine, total=40, steps=40)
    optimizer = _optimizer()
    restored = schedules.cosine(optimizer, 80)
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    restored.load_state_dict(checkpoint["lr_schedulers"][0])
    climbing = []
    for _ in range(40):
        optimizer.step()
        restored.step()
        climbing.append(optimizer.param_groups[0]["lr"])
    assert max(climbing) > 0.009  # as restored: back up to the peak
    rates, note, _ = _run(cosine, _checkpoint(cosine, total=40, steps=40), total=80)
    assert max(rates) <= checkpoint[schedules.RECORD_KEY]["last_lrs"][0] and "cosine from" in note


def test_an_extended_run_resumes_its_continuation_exactly_and_a_same_length_resume_is_untouched() -> None:
    cosine = functools.partial(schedules.cosine, eta_min=0.0)
    checkpoint = _checkpoint(cosine, total=40, steps=40)
    straight, _, _ = _run(cosine, checkpoint, total=80)  # the whole extension in one go
    # the extension interrupted at step 55 and resumed with the same config: the continuation's state is restored
    checkpoint = _checkpoint(cosine, total=40, steps=40)
    optimizer = _optimizer()
    scheduler, record, _ = schedules.build(cosine, optimizer, 80, checkpoint)
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    scheduler.load_state_dict(checkpoint["lr_schedulers"][0])
    for _ in range(15):
        optimizer.step()
        scheduler.step()
    stopped = {"optimizer_states": [optimizer.state_dict()], "global_step": 55, schedules.RECORD_KEY: record,
               "lr_schedulers": [scheduler.state_dict()]}
    resumed, note, restored = _run(cosine, stopped, total=80)
    assert note is None and isinstance(restored, schedules.Continuation)
    assert resumed == pytest.approx(straight[15:], rel=1e-12)
    rates, note, restored = _run(cosine, _checkpoint(cosine, total=40, steps=10), total=40)  # a plain resume
    assert note is None and type(restored).__name__ == "CosineAnnealingLR"
    assert rates[0] == pytest.approx(0.01 * (1 + math.cos(math.pi * 10 / 40)) / 2)


def test_a_schedule_that_cannot_continue_is_refused_in_one_sentence() -> None:
    def warm_restarts(optimizer, total_steps):
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, max(1, total_steps // 2))

    checkpoint = _checkpoint(warm_restarts, total=40, steps=40)
    with pytest.raises(ConfigError, match=r"^scheduler=warm_restarts is invalid: this schedule cannot continue a"):
        _run(warm_restarts, checkpoint, total=80)


def test_a_checkpoint_from_before_the_record_is_read_off_its_scheduler_state() -> None:
    onecycle = functools.partial(schedules.onecycle, pct_start=0.25, div_factor=25.0)
    checkpoint = _checkpoint(onecycle, total=4, steps=2)  # a tiny run: OneCycleLR built for 6 steps, not 4
    del checkpoint[schedules.RECORD_KEY]
    _, note, restored = _run(onecycle, checkpoint, total=4)  # resumed with the same config: restored as it is
    assert note is None and type(restored).__name__ == "OneCycleLR"
    cosine = functools.partial(schedules.cosine, eta_min=0.0)
    checkpoint = _checkpoint(cosine, total=40, steps=40)
    del checkpoint[schedules.RECORD_KEY]
    rates, note, _ = _run(cosine, checkpoint, total=80)
    assert "cosine schedule over 40 steps (at step 40)" in note and max(rates) <= rates[0] + 1e-12
