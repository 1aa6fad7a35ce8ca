"""Start a network's encoder from another run's (``encoder_from=<run dir>``, or this run's own pre-training).

Unsupervised pre-training (Erhan et al. 2010) is this and nothing more: an autoencoder's encoder weights become
the starting point of a classifier, which then trains with labels as usual. Every model built on the shared
``Encoder`` (cnn, fcn, dilated, autoencoder) keeps it as ``network.encoder`` with the same parameter names, so
the weights move by name. The source run's ``checkpoints/best.ckpt`` is read through the one safe loader
(:func:`~experiments.run.checkpoints.load_checkpoint`: weights-only, every file check), its ``network.encoder.*``
tensors are checked name by name and shape by shape against the new encoder, and only then loaded, all before
training starts: a run dir without a checkpoint, a checkpoint without an encoder, an encoder of another shape
and a file the loader refuses are each one sentence (:class:`~experiments.errors.ConfigError`, exit 2).
Validation (torch-free) has already checked that the directory and its best checkpoint exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from experiments.errors import ConfigError
from experiments.run.checkpoints import load_checkpoint
from experiments.run.layout import RunDir
from experiments.specs import ENCODER_KEYS, ENCODER_MODELS

#: the encoder's weights inside a task checkpoint's state_dict
PREFIX = "network.encoder."
#: the keys that set an encoder's shape, named in the fix of a shape mismatch
SHAPE_KEYS = (*(f"model.{key}" for key in ENCODER_KEYS), "data.channels", "activation", "norm")


def _mismatch(saved: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """How the saved encoder differs from the expected one, or None when names and shapes all agree."""
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    reshaped = [k for k in expected if k in saved and tuple(saved[k].shape) != tuple(expected[k].shape)]
    if reshaped:
        k = reshaped[0]
        return (f"{len(reshaped)} of its encoder weights have another shape (e.g. encoder.{k}: "
                f"{list(saved[k].shape)} there, {list(expected[k].shape)} here)")
    if missing or unexpected:
        example = f"encoder.{missing[0]} missing" if missing else f"encoder.{unexpected[0]} unexpected"
        return f"its encoder has {len(saved)} weight tensors where this model's has {len(expected)} ({example})"
    return None


def start_encoder(network: nn.Module, run_dir: str | Path, key: str = "encoder_from") -> dict[str, Any]:
    """Load ``run_dir``'s best encoder weights into ``network.encoder``; returns what was loaded, for the record."""
    run = RunDir(run_dir)
    encoder = getattr(network, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(key, run_dir, f"this run's model ({type(network).__name__}) has no shared encoder to start",
                          f"use model={', '.join(ENCODER_MODELS[:-1])} or {ENCODER_MODELS[-1]}, or drop the key")
    checkpoint = load_checkpoint(run.best_checkpoint, key=key)
    saved = {k.removeprefix(PREFIX): v for k, v in checkpoint["state_dict"].items() if k.startswith(PREFIX)}
    if not saved:
        raise ConfigError(key, run_dir, "its checkpoint holds no encoder weights (no network.encoder.*)",
                          f"start from a run of model={', '.join(ENCODER_MODELS[:-1])} or {ENCODER_MODELS[-1]}")
    problem = _mismatch(saved, encoder.state_dict())
    if problem is not None:
        raise ConfigError(key, run_dir, problem, f"give this run that run's encoder settings ({', '.join(SHAPE_KEYS)}: "
                          f"see {run.config}), or start from a run whose encoder has this run's shape")
    encoder.load_state_dict(saved)
    return {"encoder_from": str(run.root), "encoder_checkpoint": str(run.best_checkpoint),
            "encoder_tensors": len(saved)}
