"""Safe checkpoint loading: weights-only unpickling and one-sentence errors for every way a file can be bad.

Why a module of its own: a checkpoint is the one input of a run that is a binary file from somewhere
else (a copied run dir, a download, a half-written file after a crash). ``torch.load`` with its old
default executes arbitrary pickled code, and its errors for a truncated or foreign file are internal
messages ("PytorchStreamReader failed ... central directory"). Every load in the project goes through
:func:`load_checkpoint`: training's resume (also through Lightning, via :class:`SafeCheckpointIO`),
testing the best checkpoint, ``python -m experiments.evaluate`` and ``python -m experiments.inspect --ckpt``;
a standard architecture's pretrained weights (``model.weights``) through :func:`load_state_dict_file`. The one
other kind of pickle the project reads, a data file such as CIFAR-10's batches, goes through the allow-list
unpickler of :mod:`experiments.run.unpickle`; ``tests/test_architecture.py`` checks no other module unpickles.

Checks, in order, each with its own message: the path exists and is a file; it is not empty; it is a
zip archive (what ``torch.save`` and Lightning write; a bare pickle is refused before it is unpickled);
the archive is complete and every member passes its CRC-32 (a flipped byte in tensor data would
otherwise load silently); it unpickles with ``weights_only=True`` (only tensors and plain containers);
it is a Lightning checkpoint (``state_dict`` and ``pytorch-lightning_version``), or, for a weights file, a
mapping of tensors. Then, per use, it
matches the network (:func:`check_matches`) or holds the training state needed to continue
(:func:`check_resumable`).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.errors import CheckpointError

#: keys every Lightning checkpoint has
LIGHTNING_KEYS = ("state_dict", "pytorch-lightning_version")
#: keys a checkpoint needs so that training can continue from it (not only its weights)
RESUME_KEYS = ("loops", "optimizer_states", "lr_schedulers", "callbacks", "epoch", "global_step")


def other_checkpoints(path: Path) -> list[Path]:
    """The non-empty ``.ckpt`` files beside ``path`` (the same folder, ``path`` itself left out), ``last.ckpt`` first,
    then ``best*``, ``averaged.ckpt`` and the rest by name: what a hint may point at, because they exist."""
    folder = path if path.is_dir() else path.parent
    try:
        found = [p for p in folder.glob("*.ckpt") if p.is_file() and p.stat().st_size > 0 and p != path]
    except OSError:
        return []
    rank = {"last": 0, "best": 1, "averaged": 2}
    return sorted(found, key=lambda p: (rank.get(p.stem.split("-")[0], 3), p.name))


def _use_instead(path: Path) -> str:
    """``, or use <existing files> instead`` for a fix; empty when no other checkpoint exists (never a guess)."""
    others = other_checkpoints(path)
    if not others:
        return ""
    shown = [str(p) for p in others[:3]] + ([f"{len(others) - 3} more in {path.parent}"] if len(others) > 3 else [])
    return f", or use {' or '.join(shown)} instead"


def _default_fix(path: Path) -> str:
    """Re-create the file; and only if some exist, the other checkpoints beside it (a run that kept no other copy
    is not told to resume from a ``best.ckpt`` that was never written)."""
    return f"re-create it (train again, or copy a complete file again){_use_instead(path)}"


def _refused_global(err: Exception) -> str:
    """The offending global from torch's weights-only error ("GLOBAL posix.system"), else its first opcode."""
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported (?:operand|class) ([^\s|]+)", text)
    return found.group(0) if found else type(err).__name__


def _read_archive(path: Path, map_location: Any, key: str, expected: str, example: str) -> Any:
    """Unpickle a ``torch.save`` archive weights-only after the file checks of the module docstring; ``expected``
    names what the file should be and ``example`` is such a file, for the fixes of the messages."""
    if not path.exists():
        here = [str(p) for p in other_checkpoints(path)[:3]] if path.parent.is_dir() else []
        raise CheckpointError(path, "no such file", f"point it at {' or '.join(here)}" if here else
                              f"point it at an existing file, e.g. {example}", key)
    if not path.is_file():
        inside = [str(p) for p in other_checkpoints(path)[:3]]
        raise CheckpointError(path, "it is a directory, not a file", f"name a file inside it, e.g. "
                              f"{' or '.join(inside) if inside else example}", key)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(path, "the file is empty (its save never completed)", _default_fix(path), key)
    with path.open("rb") as handle:
        head = handle.read(4)
    if not zipfile.is_zipfile(path):
        if head.startswith(b"PK"):
            raise CheckpointError(path, f"the archive is truncated ({size} bytes, its end record is missing)",
                                  _default_fix(path), key)
        if head[:1] == b"\x80":
            raise CheckpointError(path, "it is a bare pickle, not a PyTorch checkpoint archive, and unpickling it "
                                  "could run arbitrary code", f"load only {expected}", key)
        raise CheckpointError(path, "it is not a PyTorch checkpoint (not a zip archive)", f"point it at one of the "
                              f"{expected}", key)
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(path, f"the archive is corrupt ({err})", _default_fix(path), key) from None
    if bad_member is not None:
        raise CheckpointError(path, f"the archive is corrupt (member {bad_member} fails its CRC-32 check)",
                              _default_fix(path), key)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(path, f"it holds pickled Python objects ({_refused_global(err)}) that weights-only "
                              "loading refuses to execute", f"load only {expected}", key) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(path, f"it cannot be read ({first[:160]})", _default_fix(path), key) from None
    return checkpoint


def load_checkpoint(path: str | Path, map_location: Any = "cpu", key: str = "ckpt_path") -> dict[str, Any]:
    """Load a Lightning checkpoint without executing pickled code; raise :class:`CheckpointError` if unusable."""
    path = Path(path)
    checkpoint = _read_archive(path, map_location, key, "checkpoints written by this project (Lightning .ckpt files)",
                               "<run dir>/checkpoints/last.ckpt")
    if not isinstance(checkpoint, Mapping) or any(k not in checkpoint for k in LIGHTNING_KEYS):
        what = f"top-level keys {sorted(map(str, checkpoint))[:6]}" if isinstance(checkpoint, Mapping) \
            else f"a {type(checkpoint).__name__}"
        raise CheckpointError(path, f"it is not a Lightning checkpoint ({what}, no state_dict and version)",
                              "point it at a .ckpt file from <run dir>/checkpoints", key)
    return dict(checkpoint)


def load_state_dict_file(path: str | Path, key: str = "model.weights") -> dict[str, torch.Tensor]:
    """The tensors of a weights file (``torch.save(model.state_dict(), path)``), read weights-only with every check.

    The pretrained weights of a standard architecture (``model.weights`` of ``model=torchvision``/``timm``) come
    from a file the user has, never from a download: torchvision's and timm's released ``.pth`` files are such
    state dicts. A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper (a Lightning checkpoint, a training
    script's) is unwrapped; keys keep their prefixes, which the network's loader strips."""
    path = Path(path)
    saved = _read_archive(path, "cpu", key, "weight files saved with torch.save(model.state_dict(), path)",
                          "resnet18-f37072fd.pth")
    for wrapper in ("state_dict", "model"):
        if isinstance(saved, Mapping) and isinstance(saved.get(wrapper), Mapping):
            saved = saved[wrapper]
    tensors = {str(k): v for k, v in saved.items() if isinstance(v, torch.Tensor)} if isinstance(saved, Mapping) \
        else {}
    if not tensors:
        raise CheckpointError(path, f"it holds no weights keyed by layer name (a {type(saved).__name__})",
                              "save them with torch.save(model.state_dict(), path)", key)
    return tensors


def check_matches(checkpoint: Mapping[str, Any], module: nn.Module, path: str | Path, key: str = "ckpt_path") -> None:
    """Raise unless the checkpoint's weights have exactly the module's names and shapes (a foreign model's don't)."""
    saved: Mapping[str, Any] = checkpoint["state_dict"]
    expected = module.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    reshaped = [k for k in expected if k in saved and hasattr(saved[k], "shape")
                and tuple(saved[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or reshaped):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if reshaped:
        k = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (e.g. {k}: {list(saved[k].shape)} here "
                     f"{list(expected[k].shape)})")
    raise CheckpointError(path, "it was saved from a different network: " + ", ".join(parts),
                          "use the configuration the checkpoint was trained with (its run dir's config.yaml)", key)


def check_resumable(checkpoint: Mapping[str, Any], path: str | Path, key: str = "ckpt_path") -> None:
    """Raise unless the checkpoint carries the optimiser, schedule and loop state that training continues from."""
    absent = [k for k in RESUME_KEYS if k not in checkpoint]
    if absent:
        last = Path(path).parent / "last.ckpt"
        start = f"continue from {last}" if last.is_file() and last != Path(path) else "start a new run without it"
        raise CheckpointError(path, f"it holds weights only (no {', '.join(absent[:3])}), so training cannot "
                              f"continue from it", f"{start}, or evaluate this file with python -m "
                              "experiments.evaluate", key)


def verify_resumable(path: str | Path, module: nn.Module, key: str = "ckpt_path") -> dict[str, Any]:
    """Everything a resume needs checked before the trainer touches the file; returns the loaded checkpoint."""
    checkpoint = load_checkpoint(path, key=key)
    check_matches(checkpoint, module, path, key)
    check_resumable(checkpoint, path, key)
    return checkpoint


def load_weights(module: nn.Module, path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """Load a checkpoint's weights into ``module`` (a LightningModule) after every check; returns the checkpoint."""
    checkpoint = load_checkpoint(path, key=key)
    check_matches(checkpoint, module, path, key)
    module.load_state_dict(checkpoint["state_dict"])
    return checkpoint


def load_network_weights(network: nn.Module, path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """Load a task checkpoint's ``network.*`` weights into the bare network after every check (``inspect --ckpt``).

    The task's other state (loss, metrics) is not the network's; a checkpoint without ``network.*`` weights
    fails :func:`check_matches` like a checkpoint of another network."""
    checkpoint = load_checkpoint(path, key=key)
    weights = {k.removeprefix("network."): v for k, v in checkpoint["state_dict"].items() if k.startswith("network.")}
    check_matches({"state_dict": weights}, network, path, key)
    network.load_state_dict(weights)
    return checkpoint


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with every load routed through :func:`load_checkpoint`.

    Lightning 2.6 passes ``weights_only=None`` to ``torch.load`` unless told otherwise (which means
    ``True`` only because torch >= 2.6 made it the default) and surfaces zip-reader errors as they come.
    Handing this plugin to the Trainer makes ``fit(ckpt_path=...)`` and ``test(ckpt_path=...)`` weights-only
    whatever the caller passes, with the same one-sentence errors as everywhere else. ``verified`` is a
    checkpoint the caller has already loaded and checked (:func:`verify_resumable`): the first load is
    answered with it, so a resumed run reads and checks its checkpoint once. Saving is Lightning's, which
    already writes atomically (an fsspec transaction: temp file, then rename).
    """

    def __init__(self, verified: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._verified = verified

    def load_checkpoint(
        self, path: Any, map_location: Callable | str | None = "cpu", weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if self._verified is not None:
            checkpoint, self._verified = self._verified, None
            return checkpoint
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")


class InitialWeights(Callback):
    """Writes ``checkpoints/init.ckpt`` (weights only) just before the first optimiser step of a fresh run.

    The loss landscape interpolates from a run's initial weights to its final ones (Goodfellow et al. 2015); the
    seed alone would rebuild them only while the model code stays the same, so the run keeps them. A continued
    run (``resume=true``, ``ckpt_path``) starts past step 0 and keeps the file its first start wrote. One small
    file per run: the network's weights, about as large as ``best.ckpt`` without the optimiser state."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # every DDP rank must take the same branch: save_checkpoint waits at a barrier for all of them
        if trainer.global_step == 0 and not trainer.strategy.broadcast(self.path.exists()):
            trainer.save_checkpoint(self.path, weights_only=True)
