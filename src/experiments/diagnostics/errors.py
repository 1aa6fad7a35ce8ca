"""Exceptions of the diagnostics, in a module without torch/Lightning imports so the CLI can catch them cheaply."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """Training stopped on a non-finite or exploding loss/gradient; the message is the whole story."""

    def __init__(
        self, message: str, *, step: int, epoch: int, layer: str | None, value: float, checkpoint: str | None
    ) -> None:
        super().__init__(message)
        self.step, self.epoch, self.layer, self.value, self.checkpoint = step, epoch, layer, value, checkpoint
