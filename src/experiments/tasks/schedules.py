"""Learning-rate schedules for the ``scheduler`` group, and how each one continues when a run is extended.

Every schedule is ``fn(optimizer, total_steps, **options)`` and steps once per optimiser step, so
milestones are given as fractions of the run and stay right when the epoch budget changes.

Extending a run (``ckpt_path=<run>/checkpoints/last.ckpt trainer.max_epochs=<more>``) restores a schedule built for
the checkpoint's own length: restored as it is, ``OneCycleLR`` raises one step past its end and
``CosineAnnealingLR`` follows its cosine back up towards the peak, silently. So when the checkpoint's schedule was
built for another length, or is another schedule, :func:`build` continues instead, from the rate (and momentum) the
checkpoint left, over the steps that are left, and says so in one line. "The rate the checkpoint left" is its next
step's, or, when its schedule had run out, the rate of its last step: one step past its end a cosine is at
``eta_min`` exactly (0: nothing would train) and OneCycleLR's formula overshoots its floor. Per schedule:

* ``none``: the checkpoint's rate, constant (a constant schedule has no length to change);
* ``step``: the milestones as fractions of the new length; a decay already applied is not undone, so the rate
  only falls: ``lr(t) = lr_ckpt * gamma ** (max(a, n(t)) - a)``, with ``a`` the decays the checkpoint had and
  ``n(t)`` the new milestones reached by step ``t``;
* ``cosine``: a fresh cosine from the checkpoint's rate down to ``eta_min`` over the steps left;
* ``onecycle``: past the new warm-up (``pct_start`` of the new length), a cosine from the checkpoint's rate down to
  the one-cycle floor (peak / ``div_factor`` / 1e4) over the steps left, momentum rising to its maximum as
  ``OneCycleLR`` does; still inside it, the warm-up goes on from the checkpoint's rate to the peak at the new
  warm-up's end, then anneals as planned.

So the rate never climbs above the checkpoint's, except in a one-cycle warm-up that has not finished. Extending a
finished cosine or one-cycle run therefore trains on at the floor rate: it fine-tunes; a longer schedule from the
start means a new run. The continuation is a :class:`Continuation` (its state goes into the checkpoint, so an
extended run resumes exactly), and every checkpoint records ``{"name", "total_steps"}`` of its schedule
(:data:`RECORD_KEY`) so that the next start can tell.
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR, OneCycleLR

#: checkpoint key of the schedule record: ``{"name": "cosine", "total_steps": 124}``
RECORD_KEY = "schedule"
#: ``OneCycleLR``'s defaults that the ``onecycle`` factory keeps (its floor and momentum range)
FINAL_DIV_FACTOR, BASE_MOMENTUM, MAX_MOMENTUM = 1e4, 0.85, 0.95


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """No schedule: the optimiser's learning rate throughout."""
    return None


def step(
    optimizer: torch.optim.Optimizer, total_steps: int, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1,
    warmup_steps: int = 0, warmup_factor: float = 0.1,
) -> LRScheduler:
    """Divide the rate by 1/gamma at each milestone (fractions of the run), as in He et al. 2016.

    ``warmup_steps`` > 0: the first steps run at ``warmup_factor`` times the rate, then it goes back up (He et al.
    warmed ResNet-110 up at 0.01 = 0.1 x 0.1 for about 400 iterations, until training error fell below 80%)."""
    marks = _milestone_steps(milestones, total_steps)
    if warmup_steps <= 0:
        return MultiStepLR(optimizer, marks, gamma)
    return LambdaLR(optimizer, WarmStep(marks, gamma, int(warmup_steps), float(warmup_factor)))


class WarmStep:
    """The warmed-up step schedule's factor at optimiser step ``s``: ``warmup_factor`` before ``warmup_steps``, times
    ``gamma`` per milestone passed (a class, not a closure, so ``LambdaLR`` keeps its state in a checkpoint)."""

    def __init__(self, marks: Sequence[int], gamma: float, warmup_steps: int, warmup_factor: float) -> None:
        self.marks, self.gamma = list(marks), gamma
        self.warmup_steps, self.warmup_factor = warmup_steps, warmup_factor

    def __call__(self, s: int) -> float:
        return (self.warmup_factor if s < self.warmup_steps else 1.0) * self.gamma ** bisect_right(self.marks, s)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, eta_min: float = 0.0) -> LRScheduler:
    """Cosine annealing to ``eta_min`` over the whole run (Loshchilov & Hutter 2017)."""
    return CosineAnnealingLR(optimizer, max(1, total_steps), eta_min)


def onecycle(
    optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0
) -> LRScheduler:
    """One-cycle (Smith 2018) peaking at the optimiser's configured learning rate."""
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr, total_steps=_onecycle_length(total_steps, pct_start), pct_start=pct_start,
                      div_factor=div_factor)


def _milestone_steps(milestones: Sequence[float], total_steps: int) -> list[int]:
    return [max(1, int(f * total_steps)) for f in milestones]


def _onecycle_length(total_steps: int, pct_start: float) -> int:
    """OneCycleLR needs at least one step in each phase; a very short run just stops early in the warm-up."""
    return max(total_steps, int(1 / pct_start) + 2, int(1 / (1 - pct_start)) + 2)


class Continuation(LRScheduler):
    """A schedule that goes on from where a checkpoint left the rate: cosine ramps between given rates.

    ``segments`` is a list of ``{"steps": n, "lr": [...], "to": [...], "momentum": [...] | None,
    "momentum_to": [...] | None}`` (one value per param group); a ramp with ``lr == to`` is flat. Step ``t`` of
    the continuation (0: the first step after the checkpoint) lies in the segment that covers it; past the last one
    the rate stays at its end. Plain lists, so the state is saved and restored weights-only like any other."""

    def __init__(self, optimizer: torch.optim.Optimizer, segments: list[dict[str, Any]], last_epoch: int = -1) -> None:
        self.segments = segments
        super().__init__(optimizer, last_epoch)

    def _at(self, t: int) -> tuple[list[float], list[float] | None]:
        start = 0
        for i, segment in enumerate(self.segments):
            steps = max(1, int(segment["steps"]))
            if t < start + steps or i == len(self.segments) - 1:
                done = min(1.0, max(0.0, (t - start) / steps))
                weight = (1 + math.cos(math.pi * done)) / 2  # 1 at the segment's start, 0 at its end
                momenta = None
                if segment.get("momentum") is not None:
                    momenta = _blend(segment["momentum"], segment["momentum_to"], weight)
                return _blend(segment["lr"], segment["to"], weight), momenta
            start += steps
        return [float(group["lr"]) for group in self.optimizer.param_groups], None  # no segments: as restored

    def get_lr(self) -> list[float]:
        lrs, momenta = self._at(self.last_epoch)
        if momenta is not None:  # like OneCycleLR: momentum (Adam's beta1) is set alongside the rate
            for group, m in zip(self.optimizer.param_groups, momenta, strict=True):
                _set_momentum(group, m)
        return lrs


def _blend(start: Sequence[float], end: Sequence[float], weight: float) -> list[float]:
    return [b + (a - b) * weight for a, b in zip(start, end, strict=True)]


def _momentum(group: Mapping[str, Any]) -> float | None:
    if "betas" in group:
        return float(group["betas"][0])
    return float(group["momentum"]) if "momentum" in group else None


def _set_momentum(group: dict[str, Any], value: float) -> None:
    if "betas" in group:
        group["betas"] = (value, *tuple(group["betas"])[1:])
    elif "momentum" in group:
        group["momentum"] = value


@dataclass(frozen=True)
class Saved:
    """What a checkpoint says about the schedule it was trained with."""

    name: str | None  # the schedule function's name ("cosine"...), "none"; None: not known
    total_steps: int | None  # the length it was built for; None: not known
    step: int  # optimiser steps taken
    lrs: list[float]  # each param group's rate for the next step
    momenta: list[float | None]
    state: dict[str, Any] | None  # the saved scheduler state (None: the run had no scheduler)
    recorded: bool = True  # name and length from the record; False: read off the scheduler's state (older runs)


def saved_schedule(checkpoint: Mapping[str, Any]) -> Saved | None:
    """The schedule state of a Lightning checkpoint (None when it carries no optimiser state)."""
    optimizers = checkpoint.get("optimizer_states") or []
    if not optimizers:
        return None
    groups = optimizers[0].get("param_groups") or []
    schedulers = checkpoint.get("lr_schedulers") or []
    state = dict(schedulers[0]) if schedulers else None
    record = checkpoint.get(RECORD_KEY) or {}
    name, total = record.get("name"), record.get("total_steps")
    if not record:  # a checkpoint from before the record: what the saved state shows
        name, total = _recognise(state)
    step = int(checkpoint.get("global_step", 0))
    lrs = [float(g["lr"]) for g in groups]  # the rate of the next step...
    last = record.get("last_lrs")
    if total is not None and step >= int(total) and last and len(last) == len(lrs):
        lrs = [float(x) for x in last]  # ...unless the schedule had run out: then the rate of its last step
    return Saved(name=name, total_steps=int(total) if total is not None else None, step=step, lrs=lrs,
                 momenta=[_momentum(g) for g in groups], state=state, recorded=bool(record))


def _recognise(state: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """The schedule and length of an unrecorded scheduler state (a step schedule's length cannot be recovered)."""
    if state is None:
        return "none", None
    if "_schedule_phases" in state:
        return "onecycle", int(state["total_steps"])
    if "T_max" in state:
        return "cosine", int(state["T_max"])
    if "milestones" in state:
        return "step", None
    return None, None


def schedule_name(factory: Callable[..., Any] | None) -> str:
    """The ``scheduler`` group's function name (``cosine``...), ``none`` for a constant rate or no factory."""
    func = factory.func if isinstance(factory, functools.partial) else factory
    name = getattr(func, "__name__", None)
    return "none" if factory is None or name == "constant" else str(name)


def _options(factory: Callable[..., Any] | None) -> dict[str, Any]:
    return dict(factory.keywords) if isinstance(factory, functools.partial) else {}


def build(factory: Callable[..., Any] | None, optimizer: torch.optim.Optimizer, total_steps: int,
          checkpoint: dict[str, Any] | None = None) -> tuple[LRScheduler | None, dict[str, Any], str | None]:
    """The run's scheduler, the record its checkpoints carry, and a one-line note when it continues a checkpoint
    whose schedule was built for another length (or is another schedule).

    ``checkpoint`` is the one ``fit`` is about to restore (Lightning restores the optimiser and then the scheduler
    from it after this): for a continuation its ``lr_schedulers`` entry is replaced by the continuation's own state,
    so that what Lightning restores is the continuation. Raises ``ConfigError`` for a schedule that cannot continue.
    """
    name = schedule_name(factory)
    record = {"name": name, "total_steps": int(total_steps)}
    peaks = [float(group["lr"]) for group in optimizer.param_groups]  # the configured rate, before a schedule sets it
    fresh = factory(optimizer, total_steps) if factory is not None else None
    saved = saved_schedule(checkpoint) if checkpoint is not None else None
    if saved is None:
        return fresh, record, None
    length = total_steps  # what the record holds; an unrecorded one-cycle's state holds the length it was built with
    if not saved.recorded and name == "onecycle":
        length = _onecycle_length(total_steps, float(_options(factory).get("pct_start", 0.25)))
    same = saved.name == name and (saved.total_steps is None or saved.total_steps == length)
    if same or saved.name is None:  # a resume of the same schedule (or one we cannot read): Lightning restores it
        if saved.state is not None and "segments" in saved.state and fresh is not None:
            fresh = Continuation(optimizer, [])  # an extended run resumed: its continuation is what is restored
        return fresh, record, None
    left = total_steps - saved.step
    if left <= 0:  # nothing left to train: Lightning stops at once
        return fresh, record, None
    was = "constant rate" if saved.name == "none" else f"{saved.name} schedule"
    was += f" over {saved.total_steps} steps" if saved.total_steps is not None else ""
    continued, plan = _continue(name, _options(factory), optimizer, saved, total_steps, peaks)
    _hand_over(checkpoint, optimizer, continued, saved)
    note = f"schedule: the checkpoint's {was} (at step {saved.step}) continued for a run of {total_steps} steps: {plan}"
    return continued, record, note


def _hand_over(checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer, continued: LRScheduler | None,
               saved: Saved) -> None:
    """Make the checkpoint restore the continuation: Lightning loads the optimiser's state (its rates included) and
    then the scheduler's after ``configure_optimizers``, so both are rewritten to where the continuation starts."""
    checkpoint["lr_schedulers"] = [continued.state_dict()] if continued is not None else []
    segments = getattr(continued, "segments", None) or [{}]
    for group, live, lr in zip(checkpoint["optimizer_states"][0]["param_groups"], optimizer.param_groups, saved.lrs,
                               strict=True):
        group["lr"] = live["lr"] if continued is not None else lr  # none: the checkpoint's rate, constant
        if segments[0].get("momentum") is not None:
            for key in ("betas", "momentum"):
                if key in group and key in live:
                    group[key] = live[key]


def _continue(name: str, options: dict[str, Any], optimizer: torch.optim.Optimizer, saved: Saved, total: int,
              peaks: list[float]) -> tuple[LRScheduler | None, str]:
    """The continuation of schedule ``name`` from ``saved`` to ``total`` steps, and what it is in words."""
    lrs, left = saved.lrs, total - saved.step
    if name == "none":
        return None, f"constant at its rate {_rates(lrs)} for the {left} steps left"
    if name == "cosine":
        floor = [min(float(options.get("eta_min", 0.0)), lr) for lr in lrs]
        plan = f"cosine from {_rates(lrs)} down to {_rates(floor)} over the {left} steps left{_at_floor(lrs, floor)}"
        return Continuation(optimizer, [_ramp(left, lrs, floor)]), plan
    if name == "onecycle":
        return _continue_onecycle(options, optimizer, saved, total, peaks)
    if name == "step":
        return _continue_step(options, optimizer, saved, total, peaks)
    from experiments.errors import ConfigError

    raise ConfigError("scheduler", name, f"this schedule cannot continue a checkpoint (ckpt_path) trained with "
                      f"{saved.name or 'another schedule'} for {saved.total_steps} steps over a run of {total} steps",
                      "use scheduler=none|step|cosine|onecycle, or the checkpoint's own trainer.max_epochs")


def _continue_onecycle(options: dict[str, Any], optimizer: torch.optim.Optimizer, saved: Saved, total: int,
                       peaks: list[float]) -> tuple[LRScheduler, str]:
    pct, div = float(options.get("pct_start", 0.25)), float(options.get("div_factor", 25.0))
    length = _onecycle_length(total, pct)
    floor = [min(p / div / FINAL_DIV_FACTOR, lr) for p, lr in zip(peaks, saved.lrs, strict=True)]
    momenta = [float(m) for m in saved.momenta if m is not None]
    momenta = momenta if len(momenta) == len(saved.momenta) else None  # an optimiser without momentum: rate only
    warm_end = int(pct * length) - 1  # OneCycleLR's last warm-up step
    last = length - 1
    if saved.step < warm_end:
        up = _ramp(warm_end - saved.step, saved.lrs, peaks, momenta, BASE_MOMENTUM)
        down = _ramp(last - warm_end, peaks, floor, [BASE_MOMENTUM] * len(peaks) if momenta else None, MAX_MOMENTUM)
        return Continuation(optimizer, [up, down]), (f"one-cycle warm-up from {_rates(saved.lrs)} to {_rates(peaks)} "
                                                     f"at step {warm_end}, then down to {_rates(floor)}")
    down = _ramp(max(1, last - saved.step), saved.lrs, floor, momenta, MAX_MOMENTUM)
    return Continuation(optimizer, [down]), f"one-cycle annealing from {_rates(saved.lrs)} down to {_rates(floor)} " \
                                            f"over the {total - saved.step} steps left" \
                                            f"{_at_floor(saved.lrs, floor)}"


def _continue_step(options: dict[str, Any], optimizer: torch.optim.Optimizer, saved: Saved, total: int,
                   peaks: list[float]) -> tuple[LRScheduler, str]:
    fractions = [float(f) for f in options.get("milestones", (0.5, 0.75))]
    gamma = float(options.get("gamma", 0.1))
    milestones = _milestone_steps(fractions, total)
    reached = sum(m <= saved.step for m in milestones)  # n(step): the new milestones already passed
    applied = reached
    if saved.name == "step" and 0 < gamma < 1 and peaks[0] > 0:  # the decays the checkpoint's rate already has
        applied = min(len(milestones), max(0, round(math.log(saved.lrs[0] / peaks[0]) / math.log(gamma))))
    owed = max(applied, reached)
    rates = [lr * gamma ** (owed - applied) for lr in saved.lrs]
    start, at = rates, saved.step
    ahead = [m for i, m in enumerate(milestones) if i >= owed and m > saved.step]
    segments = []
    for milestone in ahead:
        segments.append(_ramp(milestone - at, rates, rates))
        rates, at = [r * gamma for r in rates], milestone
    segments.append(_ramp(max(1, total - at), rates, rates))
    where = f"x{gamma:g} at step {', '.join(map(str, ahead))}" if ahead else "no decay left"
    return Continuation(optimizer, segments), (f"step from {_rates(start)}, {where} (milestones "
                                               f"{', '.join(f'{f:g}' for f in fractions)} of {total} steps)")


def _at_floor(lrs: Sequence[float], floor: Sequence[float]) -> str:
    """A warning for the note when the continuation starts at its floor (a finished cosine or one-cycle run)."""
    if all(lr <= 1.01 * f + 1e-12 for lr, f in zip(lrs, floor, strict=True)):
        return " (already at the floor, so the added steps barely train; a longer schedule needs a new run)"
    return ""


def _ramp(steps: int, start: list[float], end: list[float], momentum: list[float] | None = None,
          momentum_to: float | None = None) -> dict[str, Any]:
    """One segment of a :class:`Continuation`: cosine from ``start`` to ``end`` (and momentum to ``momentum_to``)."""
    return {"steps": int(max(1, steps)), "lr": [float(x) for x in start], "to": [float(x) for x in end],
            "momentum": [float(m) for m in momentum] if momentum is not None else None,
            "momentum_to": [float(momentum_to)] * len(momentum) if momentum is not None else None}


def _rates(lrs: Sequence[float]) -> str:
    return ", ".join(f"{lr:.3g}" for lr in dict.fromkeys(lrs))
