"""What a mid-epoch checkpoint must carry beyond Lightning's own state for a resumed run to end bit-identical.

Lightning 2.6 saves weights, optimiser, schedules, loop counters, callback states and (with
``data/sampling.py``) the loader position. It does not save:

* the running epoch accumulators: the weighted sum and count behind ``self.log(..., on_epoch=True)``
  values (Lightning's ``_ResultCollection``) and the states of the task's ``train_metrics``
  (torchmetrics). Without them the epoch a run was stopped in would report the mean over the batches
  after the restart only, and that epoch's row of the history would differ;
* the global torch RNG (dropout masks);
* (in effect) the training loader's position: Lightning saves it (``data/sampling.py``) but restores it
  only when the loader is first built after the checkpoint is read, and a schedule that asks for
  ``trainer.estimated_stepping_batches`` (ours do) builds it earlier, so the saved position would be
  ignored and the resumed epoch would start again from its first batch.

:class:`ResumeState` adds both to every checkpoint it sees and puts them back when a run resumes:
the RNG, the loader position and the metric states before the first batch, the logged sums after the first batch has
created their entries. Adding the saved sum to the first new value is exact (float addition commutes),
so the epoch mean is bit-identical. The result-collection part touches a private Lightning attribute;
if a future Lightning renames it, that part is skipped with a warning and the rest still works.

Under DDP the accumulators are per rank while a checkpoint holds rank 0's callback state only, so they
are not carried: weights, optimiser, schedule, data order and every later epoch are exact, but the
train-metric means of the epoch that was interrupted cover the batches after the restart.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


def _train_results(trainer: L.Trainer) -> Any:
    """Lightning's accumulator of values logged in ``training_step`` (private API, hence the guard)."""
    return getattr(getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "_results", None)


class ResumeState(Callback):
    """Save and restore the RNG and the current training epoch's metric accumulators with every checkpoint."""

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._module: L.LightningModule | None = None
        self._pending: dict[str, Any] | None = None
        self._pending_sums: dict[str, dict[str, torch.Tensor]] = {}
        self._sums_epoch = -1

    @property
    def state_key(self) -> str:
        return "ResumeState"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer, self._module = trainer, pl_module

    # -- saving ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        trainer, module = self._trainer, self._module
        if trainer is None or module is None or not trainer.training:
            return state  # only a checkpoint taken inside a training epoch has an epoch to finish
        state["epoch"] = trainer.current_epoch
        loader = trainer.train_dataloader
        if hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict"):
            state["loader"] = loader.state_dict()
        if trainer.world_size > 1:
            return state  # the accumulators are per rank and only rank 0's state is saved: see the module docstring
        results = _train_results(trainer)
        if results is None:
            log.warning("cannot read Lightning's epoch accumulators; a mid-epoch resume will report that "
                        "epoch's train metrics over the post-resume batches only")
        else:
            state["sums"] = {
                key: {"value": metric.value.detach().cpu().clone(),
                      "count": metric.cumulated_batch_size.detach().cpu().clone()}
                for key, metric in results.items()
                if getattr(metric, "is_tensor", False) and metric.meta.on_epoch and metric.meta.is_mean_reduction
            }
        metrics = getattr(module, "train_metrics", None)
        if metrics is not None:
            state["metrics"] = {
                name: {"states": {k: v.detach().cpu().clone() for k, v in metric.metric_state.items()
                                  if isinstance(v, torch.Tensor)},
                       "updates": int(metric._update_count)}
                for name, metric in metrics.items(keep_base=True)
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    # -- restoring -----------------------------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Latest point before the first resumed batch: nothing after it draws random numbers before that batch."""
        pending, self._pending = self._pending, None
        if not pending:
            return
        torch.set_rng_state(pending["rng"])
        if "cuda_rng" in pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(pending["cuda_rng"])
        if pending.get("epoch") != trainer.current_epoch:
            return  # resumed at an epoch boundary: the new epoch starts from empty accumulators
        loader = trainer.train_dataloader
        if "loader" in pending and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(pending["loader"])  # its iterator has not drawn a batch yet (see the docstring)
        collection = getattr(pl_module, "train_metrics", None)
        metrics = dict(collection.items(keep_base=True)) if collection is not None else {}
        for name, saved in (pending.get("metrics") or {}).items():
            metric = metrics.get(name)
            if metric is None:
                continue
            for key, value in saved["states"].items():
                current = getattr(metric, key)
                setattr(metric, key, value.to(device=current.device, dtype=current.dtype))
            metric._update_count = saved["updates"]
            metric._computed = None
        self._pending_sums = dict(pending.get("sums") or {})
        self._sums_epoch = trainer.current_epoch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._pending_sums:
            return
        results = _train_results(trainer)
        sums, self._pending_sums = self._pending_sums, {}
        if results is None or trainer.current_epoch != self._sums_epoch:
            return
        for key, saved in sums.items():
            metric = results.get(key)
            if metric is None or not getattr(metric, "is_tensor", False):
                continue
            metric.value = metric.value + saved["value"].to(metric.value.device, metric.value.dtype)
            metric.cumulated_batch_size = metric.cumulated_batch_size + saved["count"].to(
                metric.cumulated_batch_size.device)
