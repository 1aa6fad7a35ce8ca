"""The trial's side of a search: a Lightning callback that reports the validation metric to the trial every epoch
and stops the run when the study's pruner finds it hopeless.

The sweeper adds it to every trial's run as ``callbacks.optuna_trial`` (overrides, so the run's ``config.yaml``
says which study and trial it served) with the study's storage, name and pruner, the trial number and the seed's
position. ``monitor: null`` in that node makes the build hand in the task's own metric, like the checkpoint's.

When the pruner says stop, the callback marks the trial (``pruned_seed_<i>``: the other seeds' runs of the same
trial stop at their next epoch too, the trial is decided) and raises :class:`~experiments.errors.RunPruned`:
the run's record says ``pruned``, the job returns normally and the sweeper tells Optuna the trial was PRUNED.
``optuna-integration``'s ``PyTorchLightningPruningCallback`` is not used: it raises Optuna's own ``TrialPruned``
(which the record would call a failure), reports per epoch only (no seed offset), and holds the trial object,
which a Hydra job in another process does not have.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import Callback

from experiments.errors import RunPruned
from experiments.search.objective import report_step
from experiments.search.storage import CALLBACK_KEY, PRUNED_MARK, open_storage
from experiments.search.strategies import build_pruner

__all__ = ["CALLBACK_KEY", "TrialReporter"]


class TrialReporter(Callback):
    """Report ``monitor`` after every validation to trial ``trial`` of ``study_name``; prune when told to."""

    def __init__(self, storage: str, study_name: str, trial: int, seed_index: int = 0,
                 pruner: dict[str, Any] | None = None, warmup_epochs: int = 1,
                 monitor: str | None = None, mode: str | None = None) -> None:
        self.url, self.study_name, self.number = str(storage), str(study_name), int(trial)
        self.seed_index, self.warmup_epochs = int(seed_index), int(warmup_epochs)
        self.pruner_node = dict(pruner or {"name": "none"})
        self.monitor, self.mode = monitor or "val/acc", mode
        self.reported: dict[int, float] = {}
        self.pruned_at: int | None = None
        self._trial: Any = None
        self._storage: Any = None
        self._trial_id: int | None = None

    def _connect(self) -> Any:
        """The running Optuna trial (opened once, in the process that trains)."""
        if self._trial is None:
            import optuna

            storage = self._storage = open_storage(self.url)
            study = optuna.load_study(study_name=self.study_name, storage=storage,
                                      sampler=optuna.samplers.RandomSampler(), pruner=build_pruner(self.pruner_node))
            self._trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(self.study_name), self.number)
            self._trial = optuna.trial.Trial(study, self._trial_id)
        return self._trial

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        epochs = trainer.current_epoch + 1
        value = trainer.callback_metrics.get(self.monitor)
        value = float(value) if value is not None else None
        prune = False
        if trainer.is_global_zero and value is not None:
            prune = self._report(value, epochs, int(trainer.max_epochs or 1))
        prune = bool(trainer.strategy.broadcast(prune, src=0))  # every DDP rank stops together
        if prune:
            self.pruned_at = epochs
            raise RunPruned(epochs, value, self.monitor)

    def _report(self, value: float, epochs: int, max_epochs: int) -> bool:
        """Report at this (seed, epoch)'s step; whether the run should stop."""
        trial = self._connect()
        step = report_step(self.seed_index, max_epochs, epochs)
        if step not in self.reported:
            trial.report(value if math.isfinite(value) else float("nan"), step)
            self.reported[step] = value
        if epochs < self.warmup_epochs:
            return False
        if self._other_seed_pruned() or trial.should_prune():
            trial.set_user_attr(f"{PRUNED_MARK}{self.seed_index}", {"epoch": epochs, "value": value})
            return True
        return False

    def _other_seed_pruned(self) -> bool:
        """Another seed's run of this trial was pruned already: the trial's outcome is decided."""
        frozen = self._storage.get_trial(self._trial_id)
        return any(key.startswith(PRUNED_MARK) for key in frozen.user_attrs)

    def run_summary(self) -> dict[str, Any]:
        """What ``metrics.json`` keeps: the study, trial, seed position and the values reported."""
        return {"search": {"study": self.study_name, "storage": self.url, "trial": self.number,
                           "seed_index": self.seed_index, "monitor": self.monitor,
                           "reported": {str(k): v for k, v in self.reported.items()},
                           "pruned_at_epoch": self.pruned_at}}
