"""Every error a user can meet, each one sentence that names what went wrong and how to fix it.

One module, standard library only, so the commands can catch these without importing torch or Lightning
and print them without a traceback: a :class:`ConfigError` (a bad input: a key, a file, a checkpoint)
exits with status 2, :class:`TrainingDiverged` with 1, :class:`RunInterrupted` with 128 + the signal.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any


def show(value: Any) -> str:
    """A config value as the user typed it on the command line (lists as ``[a,b]``)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


class ConfigError(ValueError):
    """A user's configuration mistake; its message is the whole story: ``key=value is invalid: why; fix.``"""

    def __init__(self, key: str, value: Any, problem: str, fix: str) -> None:
        self.key, self.value = key, value
        super().__init__(f"{key}={show(value)} is invalid: {problem}; {fix}.")


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used, as one sentence: ``ckpt_path=<file> is invalid: <why>; <fix>.``

    A ``ConfigError`` on purpose: the CLIs already print those without a traceback and exit 2, and a bad
    checkpoint is a bad input of the run like any other."""

    def __init__(self, path: str | Path, problem: str, fix: str, key: str = "ckpt_path") -> None:
        self.path = Path(path)
        super().__init__(key, path, problem, fix)


class DataFileError(ConfigError):
    """A data file that cannot be used, as one sentence: ``<file> is invalid: <why>; <fix>.``

    A ``ConfigError`` (exit 2, no traceback) raised before training when a sampled check finds it, else at the
    batch that reads the file. ``message``: torch's ``DataLoader`` re-raises a worker's exception as
    ``cls(message=<the worker's traceback>)`` when the class has that attribute, and the sentence is the
    traceback's last line; keeping only it makes a worker's error read exactly like the main process's."""

    message = "a data file cannot be used"

    def __init__(self, path: str | Path = "", problem: str = "", fix: str = "", *, message: str | None = None) -> None:
        if message is not None:  # re-raised from a DataLoader worker: "<module>.DataFileError: <sentence>"
            text = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
            path = text.split(" is invalid: ", 1)[0]
        else:
            text = f"{path} is invalid: {problem}; {fix}."
        self.path, self.key, self.value = Path(path), "data.root", str(path)
        self.checkpoint: Path | None = None
        ValueError.__init__(self, text)

    def saved(self, checkpoint: str | Path) -> None:
        """The batches before this file were checkpointed: say how to continue once the file is fixed."""
        self.checkpoint = Path(checkpoint)
        self.args = (f"{self.args[0].removesuffix('.')}, then continue from {self.checkpoint} with resume=true.",)


class TrainingDiverged(RuntimeError):
    """Training stopped on a non-finite or exploding loss/gradient; the message is the whole story."""

    def __init__(
        self, message: str, *, step: int, epoch: int, layer: str | None, value: float, checkpoint: str | None
    ) -> None:
        super().__init__(message)
        self.step, self.epoch, self.layer, self.value, self.checkpoint = step, epoch, layer, value, checkpoint


class RunInterrupted(Exception):
    """Training stopped on a signal; ``checkpoint`` is where to continue from (None: nothing was saved)."""

    def __init__(self, signum: int, checkpoint: Path | None, epoch: int, step: int) -> None:
        self.signum = int(signum)
        self.checkpoint = checkpoint
        self.epoch, self.step = epoch, step
        name = signal.Signals(self.signum).name
        saved = f"checkpoint {checkpoint}" if checkpoint else "no new checkpoint (training had finished)"
        super().__init__(f"interrupted by {name} at epoch {epoch}, step {step}; {saved}")

    @property
    def exit_code(self) -> int:
        """128 + signal number: what a shell reports for a process ended by that signal."""
        return 128 + self.signum


class RunPruned(Exception):
    """A hyper-parameter search stopped this trial early: its validation metric at ``epoch`` was hopeless next to
    the other trials' at the same epoch (and seed). Not a failure: the run's record says ``pruned``, the sweep goes on
    and exits 0, and ``resume=true`` skips it."""

    def __init__(self, epoch: int, value: float | None, monitor: str) -> None:
        self.epoch, self.value, self.monitor = int(epoch), value, monitor
        shown = "n/a" if value is None else f"{value:.4g}"
        super().__init__(f"pruned by the search at epoch {epoch} ({monitor}={shown})")


class ReceptiveFieldError(RuntimeError):
    """The theoretical receptive field of a model cannot be computed (:mod:`experiments.analysis.receptive_field`).

    Not a user's input error: the layer table prints it as a note and carries on without the field."""


class TracingError(ReceptiveFieldError):
    """``torch.fx`` could not trace the model (data-dependent control flow, unsupported Python)."""


class UnsupportedOperationError(ReceptiveFieldError):
    """An operation changes the spatial layout in a way the receptive-field analysis cannot model."""
