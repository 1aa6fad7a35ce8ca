"""Test-only Lightning callbacks, instantiated through the config (``+callbacks.<name>._target_=tests.probes...``)."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class BatchProbe(Callback):
    """Prints ``probe: step <n>`` after every training batch (so a test can time a signal) and can slow batches."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        print(f"probe: step {trainer.global_step}", flush=True)
        if self.delay:
            time.sleep(self.delay)


class SelfSignal(Callback):
    """Sends ``signum`` to its own process when training reaches ``at_step`` (a real signal, in-process)."""

    def __init__(self, at_step: int, signum: int) -> None:
        self.at_step, self.signum = at_step, signum

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


class WriteLog(Callback):
    """Appends ``<rank> <file name>`` to ``log`` for every JSON file this process's ``RunRecord`` writes
    (metrics.json), and ``<rank> setup`` once the trainer is set up, so that a DDP test sees which ranks wrote
    (and that the log was live in every rank). Subprocess runs only: it rebinds
    ``experiments.run.record.write_json`` for the rest of the process."""

    def __init__(self, log: str) -> None:
        from pathlib import Path

        from lightning.fabric.utilities.rank_zero import rank_zero_only

        from experiments.run import record

        self.path = log
        original = record.write_json

        def logged(path: Any, payload: dict) -> None:
            self._line(f"{getattr(rank_zero_only, 'rank', 0)} {Path(path).name}")
            original(path, payload)

        record.write_json = logged

    def _line(self, text: str) -> None:
        with open(self.path, "a") as handle:  # one short line at a time, appended to by every rank
            handle.write(text + "\n")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._line(f"{trainer.global_rank} setup")
