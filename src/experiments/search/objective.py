"""What a search optimises and at which step a trial reports it: torch-free, read by the sweeper and the callback.

**The objective** is the task's validation metric (``specs.TASKS``: ``val/acc``, ``val/miou``, ``val/psnr``) at
the *last* epoch, the value ``train.main`` returns, and the direction is the task's. A ``direction`` that
contradicts it would make Optuna hunt for the worst model, so it is refused; ``hydra.sweeper.metric`` may name
another recorded metric (``val/loss``: minimised, a ``*loss`` is always minimised).

**The step.** With ``hydra.sweeper.seeds=[0,1,2]`` a trial trains once per seed and its objective is the mean.
Seeds differ most in the first epochs, so a pruner must compare a trial's seed-1 epoch-2 value with other trials'
seed-1 epoch-2 values, never with their seed-0 ones. Optuna's pruners compare intermediate values *at the same
step*, so every (seed, epoch) gets a step of its own::

    step = seed_index * max_epochs + epochs_completed        (seed_index: position in ``seeds``, from 0)

One seed: step = epochs completed (1, 2, ...). The step axis then also reads as a resource (epochs trained over
all seeds so far), which is what successive halving and Hyperband count. Their ``max_resource`` is set to
``len(seeds) * max_epochs`` when left at ``auto``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from experiments.errors import ConfigError

DIRECTIONS = ("maximize", "minimize")
DIRECTION_KEY, METRIC_KEY = "hydra.sweeper.direction", "hydra.sweeper.metric"


def task_objective(cfg: DictConfig) -> tuple[str, str, str]:
    """``(task, metric, direction)`` of the runs this config trains."""
    from experiments.specs import TASKS, run_task

    task = run_task(cfg)
    spec = TASKS.get(task, TASKS["classification"])
    return task, spec.monitor, spec.direction


def metric_direction(metric: str, task_metric: str, task_direction: str) -> str:
    """The direction a metric is optimised in: the task's for its own metric, min for a loss, else max."""
    if metric == task_metric:
        return task_direction
    return "minimize" if metric.rsplit("/", 1)[-1].endswith("loss") else "maximize"


def resolve(cfg: DictConfig, metric: Any, direction: Any) -> tuple[str, str, str]:
    """``(task, metric, direction)`` the search uses; a direction against the metric's is a ConfigError."""
    task, task_metric, task_direction = task_objective(cfg)
    metric = str(metric) if metric else task_metric
    if not metric.startswith(("val/", "train/")):
        raise ConfigError(METRIC_KEY, metric, "a search may only optimise a validation (or training) metric, never "
                          "a test one", f"leave it null ({task_metric} for {task}) or name a val/ metric")
    wanted = metric_direction(metric, task_metric, task_direction)
    if direction is None:
        return task, metric, wanted
    if direction not in DIRECTIONS:
        raise ConfigError(DIRECTION_KEY, direction, "it must be maximize or minimize",
                          f"leave it null (the metric's own: {wanted})")
    if direction != wanted:
        raise ConfigError(DIRECTION_KEY, direction, f"{metric} of a {task} run is {wanted[:-1]}ed, so this would "
                          f"search for the worst model", f"set {wanted}, or leave it null")
    return task, metric, wanted


def report_step(seed_index: int, max_epochs: int, epochs_completed: int) -> int:
    """The Optuna step of a value reported after ``epochs_completed`` epochs of the seed at ``seed_index``."""
    return seed_index * max(1, max_epochs) + epochs_completed
