"""``--best-of KEY``: report each arm at the value of KEY (e.g. ``optimizer.lr``) that suits it best.

A fixed learning rate favours whichever arm it happens to suit; an ablation is fair when every arm gets
its own best value from the same grid.  Within one arm (runs equal in every override but KEY and the
seed), the value whose mean *validation* metric over seeds is best is selected; the arm is then reported
with the runs at that value only.

* **Metric.**  The task's own checkpoint monitor: ``val/miou`` when a run is a segmentation run, else
  ``val/acc``, else ``val/miou``, else ``val/psnr`` (an autoencoder's), all maximised; ``val/loss``,
  minimised, when no other exists.  Only a ``val/`` metric can be chosen: test metrics are never read here, so
  the test numbers of the report are an unbiased estimate for the selected configuration.
* **Score.**  The mean over the completed runs of that value that recorded the metric.  A value whose
  mean is NaN (a seed diverged) or that has no such run is never selected.
* **Ties.**  Values are ordered ``(default)`` first (runs that do not set KEY), then numerically when a
  value is a number, then as text; among values whose means are equal to 12 significant digits the first
  in that order wins, i.e. the smallest learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.errors import ConfigError
from experiments.reporting.comparison import DEFAULT_LABEL
from experiments.reporting.runs import COMPLETED, RunResult, is_seed_override, parse_override
from experiments.reporting.stats import Stat, mean_std
from experiments.specs import TASKS

BEST_OF_OPTION = "--best-of"
SEGMENTATION = "segmentation"
#: (metric, maximise) in order of preference, the tasks' monitors (experiments.specs.TASKS) then the loss; the first
#: present in a completed run is used.
SELECTION_METRICS = (*((spec.monitor, spec.mode == "max") for spec in TASKS.values()), ("val/loss", False))
_TIE_DIGITS = 1e-12


def selection_metric(runs: Sequence[RunResult]) -> tuple[str, bool] | None:
    """The validation metric to select by and whether higher is better (None: no run has one)."""
    done = [run for run in runs if run.status == COMPLETED]
    present = {key for run in done for key in run.metrics}
    segmentation = TASKS[SEGMENTATION]
    if segmentation.monitor in present and any(run.task == SEGMENTATION for run in done):
        return segmentation.monitor, segmentation.mode == "max"
    return next(((m, up) for m, up in SELECTION_METRICS if m in present), None)


def setting_value(run: RunResult, key: str) -> str:
    """The value the run's overrides give ``key`` (the last one wins, as in Hydra), else :data:`DEFAULT_LABEL`."""
    value = DEFAULT_LABEL
    for override in run.overrides:
        name, given = parse_override(override)
        if name == key:
            value = given
    return value


def value_order(value: str) -> tuple[int, float, str]:
    """Sort key: ``(default)`` first, then numbers by magnitude, then other values as text."""
    if value == DEFAULT_LABEL:
        return (0, 0.0, "")
    try:
        number = float(value)
    except ValueError:
        return (2, 0.0, value)
    return (1, number, value) if not math.isnan(number) else (2, 0.0, value)


def check_key(runs: Sequence[RunResult], key: str) -> None:
    """A one-sentence :class:`ConfigError` unless ``key`` is an override some run sets (and not the seed)."""
    if is_seed_override(f"{key}=0"):
        raise ConfigError(BEST_OF_OPTION, key, "seeds are replicates, not a setting to select", "name a swept key")
    keys = {parse_override(o)[0] for run in runs for o in run.overrides if not is_seed_override(o)}
    if key not in keys:
        choices = ", ".join(sorted(keys)) or "none"
        raise ConfigError(BEST_OF_OPTION, key, "no run sets it as an override", f"name one of: {choices}")


@dataclass(frozen=True)
class Candidate:
    """One value of the key within one arm: its runs (any status) and the validation score."""

    value: str
    runs: list[RunResult]
    score: Stat  # the selection metric over the completed runs of this value

    @property
    def eligible(self) -> bool:
        return self.score.mean is not None and math.isfinite(self.score.mean)


@dataclass(frozen=True)
class ArmChoice:
    """The candidates of one arm in :func:`value_order` and the selected one (None: none eligible)."""

    candidates: list[Candidate]
    chosen: Candidate | None


def _better(score: float, incumbent: float, maximize: bool) -> bool:
    if math.isclose(score, incumbent, rel_tol=_TIE_DIGITS, abs_tol=0.0):
        return False
    return score > incumbent if maximize else score < incumbent


def choose(runs: Sequence[RunResult], key: str, metric: str, maximize: bool) -> ArmChoice:
    """Select the value of ``key`` with the best mean ``metric`` over the completed runs of one arm."""
    if not metric.startswith("val/"):
        raise ValueError(f"selection must use a validation metric, got {metric!r}")
    by_value: dict[str, list[RunResult]] = {}
    for run in runs:
        by_value.setdefault(setting_value(run, key), []).append(run)
    candidates = [
        Candidate(value, members, mean_std(r.metrics.get(metric) for r in members if r.status == COMPLETED))
        for value, members in sorted(by_value.items(), key=lambda item: value_order(item[0]))
    ]
    chosen: Candidate | None = None
    for candidate in candidates:
        if not candidate.eligible:
            continue
        if chosen is None or _better(candidate.score.mean, chosen.score.mean, maximize):  # type: ignore[arg-type]
            chosen = candidate
    return ArmChoice(candidates, chosen)


@dataclass(frozen=True)
class Selection:
    """What ``--best-of`` decided, for the report's selection section."""

    key: str
    metric: str
    maximize: bool
    arms: list[tuple[tuple[str, ...], ArmChoice]]  # (arm key, choice) in sweep order

    @property
    def direction(self) -> str:
        return "higher is better" if self.maximize else "lower is better"
