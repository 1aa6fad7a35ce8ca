"""Divergence guard: stop at the first non-finite loss or gradient, or an exploding gradient norm.

A diverged run otherwise keeps "training" on NaNs until the epoch ends, and the only trace is a
flat NaN curve. The guard checks every ``every_n_steps`` optimiser steps, before the update is
applied (``on_before_optimizer_step``), and raises :class:`TrainingDiverged` with one sentence that
names the step, the layer and the value, and how to fix it.

The last good state: after each check passes, the guard keeps an in-memory copy of the module's
state (weights and buffers such as BatchNorm statistics) — the weights that have just produced a
finite loss and sane gradients. A huge learning rate typically turns such weights into garbage in
one update, so the state *before the bad step* is already bad; the copy from the previous check is
not. On divergence that copy is written to ``<checkpoints>/last_good.ckpt`` through
``Trainer.save_checkpoint``, so even a run that fails in its first epoch (before ``last.ckpt``
exists) leaves a loadable checkpoint. The copy costs one memcpy of the parameters per checked step.

Cost per checked step: one fused total-norm kernel and one host sync. Per-layer norms (to name the
culprit) are computed only when that check fails: a total norm within the threshold bounds every
layer's norm, so the fast path decides exactly what the per-layer rule would.

With ``trainer.gradient_clip_val`` set, clipping is the user's chosen remedy for large norms, so the
norm threshold is not applied; non-finite values are always fatal (clipping cannot repair a NaN).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.analysis.depth import CallOrder, parameter_owners
from experiments.diagnostics.sinks import network_of
from experiments.errors import TrainingDiverged

__all__ = ["DivergenceGuard", "TrainingDiverged", "first_nonfinite_output"]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def total_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all ``tensors`` together: one fused kernel where torch has ``get_total_norm`` (2.6+)."""
    fused = getattr(torch.nn.utils, "get_total_norm", None)
    if fused is not None:
        return fused([t.detach() for t in tensors], 2.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach().float()) for t in tensors]))


def first_nonfinite_output(network: nn.Module, inputs: torch.Tensor) -> str | None:
    """Qualified name of the first leaf module (in call order) whose output is not finite on ``inputs``.

    Runs a deep copy in its current mode, so the caller's model (and its BatchNorm statistics) is untouched.
    """
    probe = copy.deepcopy(network)
    found: list[str] = []
    handles = []
    for name, module in probe.named_modules():
        if next(module.children(), None) is None:
            def hook(m: nn.Module, args: Any, out: Any, name: str = name) -> None:
                if not found and isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
                    found.append(name)

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            probe(inputs)
    except Exception:  # the probe is best effort: the message still names the step and the value
        pass
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


class DivergenceGuard(Callback):
    """Raises :class:`TrainingDiverged` on a non-finite loss or gradient, or a layer gradient norm above a threshold.

    Knobs:

    * ``max_grad_norm`` – per-layer gradient L2 norm that counts as exploding (None: only non-finite values);
    * ``every_n_steps`` – check every n optimiser steps (1: every step; the check is one host sync);
    * ``keep_last_good`` – keep the in-memory copy of the last verified state and write it on divergence;
    * ``dirpath`` – where ``last_good.ckpt`` goes (default: the ModelCheckpoint's directory).
    """

    def __init__(
        self,
        max_grad_norm: float | None = 1.0e4,
        every_n_steps: int = 1,
        keep_last_good: bool = True,
        dirpath: str | None = None,
        filename: str = "last_good.ckpt",
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm}")
        self.max_grad_norm = max_grad_norm
        self.every_n_steps = every_n_steps
        self.keep_last_good = keep_last_good
        self.dirpath = dirpath
        self.filename = filename
        self.diverged: dict[str, Any] | None = None
        self._owners: dict[str, nn.Module] = {}
        self._order: CallOrder | None = None
        self._depth: list[str] | None = None
        self._loss: torch.Tensor | None = None
        self._inputs: torch.Tensor | None = None
        self._good: dict[str, torch.Tensor] | None = None
        self._good_step: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._owners = parameter_owners(network_of(pl_module))
        self._order = CallOrder(self._owners)
        self._depth = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._inputs = first if isinstance(first, torch.Tensor) else None  # a reference, for the post-mortem probe

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = trainer.global_step
        if self._depth is None:
            self._depth = self._order.finish() if self._order is not None else list(self._owners)
        if step % self.every_n_steps:
            return
        grads = [p.grad for name in self._depth for p in self._owners[name].parameters(recurse=False)
                 if p.grad is not None]
        loss = self._loss.float().reshape(()) if self._loss is not None else torch.zeros(())
        total = total_norm(grads).float().to(loss.device) if grads else torch.zeros((), device=loss.device)
        loss_value, total_value = torch.stack([loss, total]).double().cpu().tolist()  # the step's one host sync
        threshold = self._threshold(trainer)
        # Fast path: a finite total norm within the threshold bounds every layer's norm, so nothing is wrong.
        if not (math.isfinite(loss_value) and math.isfinite(total_value)) or (
            threshold is not None and total_value > threshold
        ):
            names, layer_norms = self._layer_norms()
            problem = self._problem(pl_module, loss_value, names, layer_norms, threshold)
            if problem is not None:
                self._stop(trainer, pl_module, step, *problem)
        if self.keep_last_good:
            self._remember(pl_module.state_dict(), step)

    def _threshold(self, trainer: L.Trainer) -> float | None:
        clipping = trainer.gradient_clip_val is not None and trainer.gradient_clip_val > 0
        return None if clipping else self.max_grad_norm

    def _layer_norms(self) -> tuple[list[str], list[float]]:
        """Gradient L2 norm of every parameter-owning layer, in depth order (the slow path, after a failed check)."""
        names, norms = [], []
        for name in self._depth or []:
            grads = [p.grad for p in self._owners[name].parameters(recurse=False) if p.grad is not None]
            if grads:
                names.append(name)
                norms.append(float(total_norm(grads)))
        return names, norms

    def _remember(self, state: dict[str, torch.Tensor], step: int) -> None:
        """Copy the verified state into buffers allocated once (a copy per step, not an allocation per step)."""
        good = self._good
        if good is None or good.keys() != state.keys() or any(good[k].shape != v.shape for k, v in state.items()):
            self._good = {k: v.detach().clone() for k, v in state.items()}
        else:
            for key, value in state.items():
                good[key].copy_(value.detach())
        self._good_step = step

    def _problem(
        self, pl_module: L.LightningModule, loss: float, names: list[str], norms: list[float],
        threshold: float | None,
    ) -> tuple[str, str | None, float, bool] | None:
        """(what went wrong, layer, value, is_threshold) or None when the step is sound."""
        network = network_of(pl_module)
        if not math.isfinite(loss):
            layer = first_nonfinite_output(network, self._inputs) if self._inputs is not None else None
            where = f", first non-finite output at layer {self._describe(network, layer)}" if layer else ""
            return f"the loss is {loss}{where}", layer, loss, False
        bad = [i for i, n in enumerate(norms) if not math.isfinite(n)]
        if bad:
            source = bad[-1]  # back-propagation runs output -> input: the deepest bad layer is where it started
            extra = f" (non-finite in {len(bad)} of {len(norms)} layers)" if len(bad) > 1 else ""
            what = f"the gradient of layer {self._describe(network, names[source])} is {norms[source]}{extra}"
            return what, names[source], norms[source], False
        if threshold is not None and norms:
            worst = max(range(len(norms)), key=norms.__getitem__)
            if norms[worst] > threshold:
                what = (f"the gradient norm of layer {self._describe(network, names[worst])} is {_fmt(norms[worst])}, "
                        f"above max_grad_norm={_fmt(threshold)}")
                return what, names[worst], norms[worst], True
        return None

    @staticmethod
    def _describe(network: nn.Module, name: str | None) -> str:
        if not name:
            return "'<network>'"
        module = network.get_submodule(name)
        return f"'{name}' ({type(module).__name__})"

    def _checkpoint_dir(self, trainer: L.Trainer) -> Path:
        if self.dirpath:
            return Path(self.dirpath)
        callback = trainer.checkpoint_callback
        if callback is not None and getattr(callback, "dirpath", None):
            return Path(callback.dirpath)
        return Path(trainer.default_root_dir) / "checkpoints"

    def _save_last_good(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str | None:
        """Write the last verified state; else point at an existing checkpoint; None if there is none."""
        directory = self._checkpoint_dir(trainer)
        if self._good is not None:
            pl_module.load_state_dict(self._good)  # the live weights are abandoned: the run stops here
            path = directory / self.filename
            trainer.save_checkpoint(path)
            return str(path)
        existing = sorted(directory.glob("*.ckpt"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []
        return str(existing[-1]) if existing else None

    def _stop(
        self, trainer: L.Trainer, pl_module: L.LightningModule, step: int, what: str, layer: str | None,
        value: float, threshold: bool,
    ) -> None:
        checkpoint = self._save_last_good(trainer, pl_module)
        if checkpoint is None:
            kept = "no good state exists to save (it diverged on its first checked step)"
        elif self._good is not None:
            kept = f"the last good state (step {self._good_step}) is saved in {checkpoint}"
        else:
            kept = f"the last good checkpoint is {checkpoint}"
        lr = next((g.get("lr") for opt in trainer.optimizers for g in opt.param_groups), None)
        fix = (f"lower optimizer.lr (now {_fmt(float(lr))})" if lr is not None else "lower optimizer.lr")
        fix += " or clip gradients with trainer.gradient_clip_val=1.0"
        if threshold:
            fix += ", or raise diagnostics.guard.max_grad_norm if such norms are expected"
        message = f"training diverged at step {step} (epoch {trainer.current_epoch}): {what}; {kept}; {fix}."
        self.diverged = {"step": step, "epoch": trainer.current_epoch, "layer": layer, "value": str(value),
                         "checkpoint": checkpoint}
        raise TrainingDiverged(message, step=step, epoch=trainer.current_epoch, layer=layer, value=value,
                               checkpoint=checkpoint)

    def run_summary(self) -> dict[str, Any]:
        return {"diverged": self.diverged} if self.diverged is not None else {}
