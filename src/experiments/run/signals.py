"""SIGINT/SIGTERM during a run: finish the current batch, write a checkpoint, stop with a clear status.

Why not Lightning's own handling: on Ctrl+C Lightning catches ``KeyboardInterrupt`` and calls
``sys.exit(1)`` (no checkpoint, and ``metrics.json`` would still say "running"); on SIGTERM it raises
``SIGTERMException`` at the next batch end or in the middle of validation, again without a checkpoint.
:class:`GracefulStop` replaces both handlers while the trainer runs (Lightning installs its own just
before the loop starts, so ours go in at ``on_train_start``/``on_test_start``, and Lightning's teardown
puts the original handlers back). The handler only records the signal; the work happens at a safe
point, the end of the current training batch, where Lightning's own step checkpoints are taken, so
the loops restart from it exactly. Then :class:`RunInterrupted` carries the signal to ``train``,
which writes ``status: interrupted`` and to the CLI, which exits with 128 + the signal number
(130 for SIGINT, 143 for SIGTERM), the shell convention.

A second signal while the first is being handled aborts at once (SIGINT raises ``KeyboardInterrupt``,
SIGTERM takes its default action), for a user who does not want to wait for the batch to finish.

Under DDP every process runs this callback; the decision to stop is reduced across ranks each batch
(any rank signalled -> all stop at the same batch), because saving a checkpoint is a collective.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from experiments.errors import RunInterrupted

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop(Callback):
    """Trap SIGINT/SIGTERM during fit and test; checkpoint at the end of the current training batch and stop."""

    def __init__(self, checkpoint_path: str | Path, signals: tuple[int, ...] = HANDLED_SIGNALS) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.signals = tuple(signals)
        self.received: int | None = None

    # -- the handler: record only; async-signal context is no place for I/O --------------------------

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # second signal: the user wants out now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        log.warning("received %s: stopping after the current batch (send it again to abort without a checkpoint)",
                    signal.Signals(signum).name)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in self.signals:
            signal.signal(signum, self._handle)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    # -- the safe points -------------------------------------------------------------------------------

    def _should_stop(self, trainer: L.Trainer) -> bool:
        local = self.received is not None
        if trainer.world_size > 1:  # one collective per batch, so that every rank stops at the same batch
            return bool(trainer.strategy.reduce_boolean_decision(local, all=False))
        return local

    def _signal(self) -> int:
        return self.received if self.received is not None else int(signal.SIGTERM)  # another rank's signal

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._should_stop(trainer):
            return
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # collective under DDP; rank 0 writes
        raise RunInterrupted(self._signal(), self.checkpoint_path, trainer.current_epoch, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A signal during the last validation: the epoch-end checkpoint (last.ckpt) already holds everything.
        if self._should_stop(trainer):
            last = self.checkpoint_path if self.checkpoint_path.is_file() else None
            raise RunInterrupted(self._signal(), last, trainer.current_epoch, trainer.global_step)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._should_stop(trainer):  # training is complete; resuming only re-runs the test
            raise RunInterrupted(self._signal(), None, trainer.current_epoch, trainer.global_step)
