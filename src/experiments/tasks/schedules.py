"""Learning-rate schedules for the ``scheduler`` group.

Every schedule is ``fn(optimizer, total_steps, **options)`` and steps once per optimiser step, so
milestones are given as fractions of the run and stay right when the epoch budget changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, OneCycleLR


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """No schedule: the optimiser's learning rate throughout."""
    return None


def step(
    optimizer: torch.optim.Optimizer, total_steps: int, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1
) -> LRScheduler:
    """Divide the rate by 1/gamma at each milestone (fractions of the run), as in He et al. 2016."""
    return MultiStepLR(optimizer, [max(1, int(f * total_steps)) for f in milestones], gamma)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, eta_min: float = 0.0) -> LRScheduler:
    """Cosine annealing to ``eta_min`` over the whole run (Loshchilov & Hutter 2017)."""
    return CosineAnnealingLR(optimizer, max(1, total_steps), eta_min)


def onecycle(
    optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0
) -> LRScheduler:
    """One-cycle (Smith 2018) peaking at the optimiser's configured learning rate."""
    max_lr = [group["lr"] for group in optimizer.param_groups]
    # OneCycleLR needs at least one step in each phase; a very short run just stops early in the warm-up.
    total = max(total_steps, int(1 / pct_start) + 2, int(1 / (1 - pct_start)) + 2)
    return OneCycleLR(optimizer, max_lr, total_steps=total, pct_start=pct_start, div_factor=div_factor)
