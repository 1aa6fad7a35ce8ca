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

Cost per checked step: one fused kernel for every parameter's gradient norm, their total, and reading
those numbers on the host. A total norm within the threshold bounds every layer's norm, so the fast path
decides exactly what the per-layer rule would; per-layer norms (to name the culprit) are combined from
the per-parameter ones only when a check fails.

Reading a number on the host waits for the device to finish everything queued before it. On a GPU that
would stall the queue every step and expose the host's per-step work, so there the check is *deferred*:
its numbers are copied to pinned host memory asynchronously and judged at the next check (or at the
validation, a checkpoint save, the end of the epoch or of training, whichever comes first), with the
state of its step kept in a second buffer. A divergence is then reported for the step where it happened,
with the same last good state, one step later. On a CPU there is no queue to stall: checks are judged
at once.

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


def _per_layer(layers: list[str], norms: list[float]) -> tuple[list[str], list[float]]:
    """Per-parameter gradient norms (tagged with their layer, in depth order) combined into per-layer L2 norms."""
    names: list[str] = []
    squares: list[float] = []
    for layer, norm in zip(layers, norms, strict=True):
        if not names or names[-1] != layer:
            names.append(layer)
            squares.append(0.0)
        squares[-1] += norm * norm
    return names, [math.sqrt(sq) for sq in squares]


class _Check:
    """One check's numbers ([loss, total norm, each parameter's gradient norm]) and what explains a failure."""

    def __init__(self, step: int, epoch: int, values: torch.Tensor, layers: list[str],
                 inputs: torch.Tensor | None) -> None:
        self.step, self.epoch, self.values, self.layers, self.inputs = step, epoch, values, layers, inputs
        self._host: torch.Tensor | None = None
        self._copied: Any = None

    def send_to_host(self) -> None:
        """Start the copy to pinned host memory without waiting for it (the device finishes the step meanwhile)."""
        if self.values.device.type != "cuda":
            return
        self._host = torch.empty(self.values.shape, dtype=self.values.dtype, pin_memory=True)
        self._host.copy_(self.values, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()

    def host_values(self) -> list[float]:
        if self._copied is not None:
            self._copied.synchronize()  # long done by the next check: this waits for that copy, not for the queue
            return self._host.double().tolist()  # type: ignore[union-attr]
        return self.values.double().cpu().tolist()


class DivergenceGuard(Callback):
    """Raises :class:`TrainingDiverged` on a non-finite loss or gradient, or a layer gradient norm above a threshold.

    Knobs:

    * ``max_grad_norm`` – per-layer gradient L2 norm that counts as exploding (None: only non-finite values);
    * ``every_n_steps`` – check every n optimiser steps (1: every step);
    * ``keep_last_good`` – keep the in-memory copy of the last verified state and write it on divergence;
    * ``dirpath`` – where ``last_good.ckpt`` goes (default: the ModelCheckpoint's directory);
    * ``deferred`` – read each check's numbers at the next check instead of waiting for the device now
      (None: on CUDA devices, where waiting would stall the queue of work every step; see the module docstring).
    """

    def __init__(
        self,
        max_grad_norm: float | None = 1.0e4,
        every_n_steps: int = 1,
        keep_last_good: bool = True,
        dirpath: str | None = None,
        filename: str = "last_good.ckpt",
        deferred: bool | None = None,
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
        self.deferred = deferred
        self._pending: _Check | None = None  # a deferred check, judged at the next one
        self._spare: dict[str, torch.Tensor] | None = None  # the state of the pending check's step
        self._state: list[tuple[str, torch.Tensor]] = []  # the module's state tensors, listed once per fit

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._owners = parameter_owners(network_of(pl_module))
        self._order = CallOrder(self._owners)
        self._depth = None
        self._state, self._pending = [], None

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
        self._resolve(trainer, pl_module)  # the previous check, when it was deferred
        check = self._measure(step, trainer.current_epoch)
        if self._defers(check.values.device):
            check.send_to_host()  # read at the next check: the device runs on meanwhile
            self._pending = check
            if self.keep_last_good:
                self._spare = self._snapshot(self._spare, pl_module)
            return
        self._judge(trainer, pl_module, check)
        if self.keep_last_good:
            self._good, self._good_step = self._snapshot(self._good, pl_module), step

    def _defers(self, device: torch.device) -> bool:
        return self.deferred if self.deferred is not None else device.type == "cuda"

    def _measure(self, step: int, epoch: int) -> _Check:
        """Launch the check's numbers: loss, total gradient norm and every parameter's gradient norm (depth order)."""
        layers, grads = [], []
        for name in self._depth or []:
            for p in self._owners[name].parameters(recurse=False):
                if p.grad is not None:
                    layers.append(name)
                    grads.append(p.grad.detach())
        device = self._loss.device if self._loss is not None else grads[0].device if grads else torch.device("cpu")
        loss = self._loss.float().reshape(1) if self._loss is not None else torch.zeros(1, device=device)
        # one fused kernel for all the norms (what clip_grad_norm_ uses), one for their total
        norms = torch.stack(torch._foreach_norm(grads)).float().to(device) if grads else loss.new_zeros(0)
        values = torch.cat([loss, torch.linalg.vector_norm(norms).reshape(1), norms])
        return _Check(step, epoch, values, layers, self._inputs)

    def _judge(self, trainer: L.Trainer, pl_module: L.LightningModule, check: _Check,
               weights: dict[str, torch.Tensor] | None = None) -> None:
        """Raise :class:`TrainingDiverged` when the check failed. ``weights``: the state its step ran with, when the
        network has moved on since (a deferred check), for the post-mortem probe."""
        loss_value, total_value, *norms = check.host_values()
        threshold = self._threshold(trainer)
        # Fast path: a finite total norm within the threshold bounds every layer's norm, so nothing is wrong.
        if math.isfinite(loss_value) and math.isfinite(total_value) and (threshold is None or total_value <= threshold):
            return
        names, layer_norms = _per_layer(check.layers, norms)
        problem = self._problem(pl_module, loss_value, names, layer_norms, threshold, check.inputs, weights)
        if problem is not None:
            self._stop(trainer, pl_module, check.step, check.epoch, *problem)

    def _resolve(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Judge the deferred check; if it passed, the state of its step becomes the last good one."""
        check, self._pending = self._pending, None
        if check is None:
            return
        self._judge(trainer, pl_module, check, weights=self._spare)
        if self.keep_last_good and self._spare is not None:
            self._good, self._spare, self._good_step = self._spare, self._good, check.step

    # a deferred check is resolved before anything could keep the weights of its step: the next check, the
    # validation, every checkpoint save and the end of the epoch and of training
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resolve(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._resolve(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resolve(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resolve(trainer, pl_module)

    def _threshold(self, trainer: L.Trainer) -> float | None:
        clipping = trainer.gradient_clip_val is not None and trainer.gradient_clip_val > 0
        return None if clipping else self.max_grad_norm

    def _snapshot(self, buffers: dict[str, torch.Tensor] | None, pl_module: L.LightningModule
                  ) -> dict[str, torch.Tensor]:
        """Copy the module's state (weights and buffers) into ``buffers``, allocated once: one fused copy per step.

        The state's tensors are listed at ``on_train_start`` (after Lightning's device moves), not per step."""
        if not self._state:
            self._state = [(k, v.detach()) for k, v in pl_module.state_dict(keep_vars=True).items()]
        if buffers is None or len(buffers) != len(self._state) or any(
                buffers[k].shape != v.shape for k, v in self._state):
            return {k: v.clone() for k, v in self._state}
        torch._foreach_copy_(list(buffers.values()), [v for _, v in self._state])
        return buffers

    def _problem(
        self, pl_module: L.LightningModule, loss: float, names: list[str], norms: list[float],
        threshold: float | None, inputs: torch.Tensor | None = None, weights: dict[str, torch.Tensor] | None = None,
    ) -> tuple[str, str | None, float, bool] | None:
        """(what went wrong, layer, value, is_threshold) or None when the step is sound."""
        network = network_of(pl_module)
        if not math.isfinite(loss):
            if weights is not None:  # the run stops here: the live weights are abandoned anyway
                pl_module.load_state_dict(weights)
            layer = first_nonfinite_output(network, inputs) if inputs is not None else None
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
        self, trainer: L.Trainer, pl_module: L.LightningModule, step: int, epoch: int, what: str, layer: str | None,
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
        message = f"training diverged at step {step} (epoch {epoch}): {what}; {kept}; {fix}."
        self.diverged = {"step": step, "epoch": epoch, "layer": layer, "value": str(value),
                         "checkpoint": checkpoint}
        raise TrainingDiverged(message, step=step, epoch=epoch, layer=layer, value=value,
                               checkpoint=checkpoint)

    def run_summary(self) -> dict[str, Any]:
        return {"diverged": self.diverged} if self.diverged is not None else {}
