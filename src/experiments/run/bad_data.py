"""A bad data file met at a training batch (streamed data): checkpoint the batches before it, so nothing is lost.

Files that stream from disk are read at their batch, so a truncated image can stop a run hours in. The
error (``errors.DataFileError``) is raised while the batch is fetched, before any loop counter, weight or
metric moved for it; :class:`CheckpointOnBadFile` then writes ``checkpoints/last.ckpt`` from exactly that
state (with ``run/state.py``'s mid-epoch extras), adds "then continue from <last.ckpt> with resume=true" to
the error's sentence, and lets the run fail (``metrics.json``: status failed, that sentence, the checkpoint).
Once the file is fixed, ``resume=true`` continues at the batch that failed, bit-identical to a run that never
met the bad file. A bad file met anywhere else (a validation or test batch, under DDP, where nothing is written: a
checkpoint is a collective the other ranks are not in, or the setup of a resumed run) ends with the same hint
whenever a ``last.ckpt`` is already there (the last epoch's end), since ``resume=true`` continues from it; only a
run with no checkpoint yet (a fresh run's setup) ends without one, as it simply starts again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import RunningStage, TrainerFn

from experiments.errors import DataFileError


class CheckpointOnBadFile(Callback):
    """On a :class:`DataFileError` inside a training epoch: save ``checkpoint_path`` and say so in the error."""

    def __init__(self, checkpoint_path: str | Path) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.saved: Path | None = None
        self._in_training = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_training = True  # a file that fails at setup (loading into memory) has nothing to save

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_training = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, DataFileError) or exception.checkpoint is not None:
            return
        training = trainer.state.fn == TrainerFn.FITTING and trainer.state.stage == RunningStage.TRAINING
        if self._in_training and training and trainer.world_size == 1:
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        elif not self.checkpoint_path.is_file():
            return  # nothing to continue from (a fresh run's setup): the fixed run starts over
        # else a validation or test batch, DDP, or a resumed run's setup: resume=true continues from the last.ckpt
        # already there (the epoch's end, or where the resumed run stood), so the sentence still says how
        exception.saved(self.checkpoint_path)
        self.saved = self.checkpoint_path

    def run_summary(self) -> dict[str, Any]:
        """``metrics.json``'s ``checkpoint``: where to continue from once the file is fixed."""
        return {"checkpoint": str(self.saved)} if self.saved is not None else {}
