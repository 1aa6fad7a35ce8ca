"""``trainer.compile`` and ``trainer.channels_last`` applied to a run's network, and the ``speed`` record.

Why the task calls a compiled *view* instead of compiling the network in place: ``torch.compile(network)``
returns a wrapper whose ``state_dict`` keys gain ``_orig_mod.``, and a compiled graph runs none of the
forward hooks registered after it was traced (Dynamo does not guard on hooks). So the task keeps its plain
``network``, which checkpoints, ``evaluate``, ``inspect`` and the diagnostics' probes see as always, and
its ``forward`` calls a :class:`CompiledNetwork`, which runs the compiled graph on every call *except*
those made while a forward hook is registered on the network: the first step, whose call-order probe
finds the layers' depth order, and every ``interval``-th step of the activation statistics. Those run
eagerly, so every diagnostic works under compile, for one eager step per measurement.

When: the view is made at ``on_train_start``, after Lightning has restored any checkpoint and moved the
network to its device (and after ``channels_last``, applied at ``setup``), and Dynamo compiles it at its
first call without hooks. ``dynamic=False`` specialises a graph per input shape (the training batch, the
evaluation batch, a split's partial last batch: a handful), which CUDA graphs need. ``reduce-overhead`` and
``max-autotune`` replay CUDA graphs, so each call first marks a new step
(``torch.compiler.cudagraph_mark_step_begin``): an output of the previous step may still be alive (the
logged loss). The test after ``fit`` runs eagerly: compiling its graphs would cost more than one pass saves.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn.modules import module as module_hooks

from experiments.speed.settings import SpeedSettings

log = logging.getLogger(__name__)

#: modes that replay CUDA graphs on a GPU
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


def has_module_hooks(modules: list[nn.Module]) -> bool:
    """Whether any forward or backward module hook would run in a call of these modules, global hooks included.

    Reads ``nn.Module``'s hook dictionaries: PyTorch has no public way to ask, and a compiled graph traced
    without them would silently skip exactly these hooks."""
    if (module_hooks._global_forward_hooks or module_hooks._global_forward_pre_hooks
            or module_hooks._global_backward_hooks or module_hooks._global_backward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in modules)


class CompiledNetwork:
    """Calls ``torch.compile(network)``, or ``network`` itself while a module hook is registered on it.

    Not an ``nn.Module``: held by the task as a plain attribute, it stays out of the task's ``state_dict``,
    ``.to()`` and ``.train()`` (the compiled graph reads the very parameters and modes of ``network``).
    ``backend`` is torch.compile's (``inductor``; tests use ``eager`` for speed)."""

    def __init__(self, network: nn.Module, mode: str = "default", backend: str = "inductor") -> None:
        self.network = network
        self.mode = mode
        options: dict[str, Any] = {"mode": mode} if backend == "inductor" else {}
        self.compiled = torch.compile(network, dynamic=False, backend=backend, **options)
        self.cudagraphs = backend == "inductor" and mode in CUDAGRAPH_MODES
        self.calls = {"compiled": 0, "eager": 0}
        self._modules = list(network.modules())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if has_module_hooks(self._modules):
            self.calls["eager"] += 1
            return self.network(x)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        self.calls["compiled"] += 1
        return self.compiled(x)


class SpeedSwitches(Callback):
    """Applies ``channels_last`` (at ``setup``) and ``compile`` (at ``on_train_start``) to the task's network, and
    contributes ``speed`` to ``metrics.json``: the settings, where the data were served from, compiled/eager calls.

    The task must call ``self.compiled`` when it is set (``experiments.tasks.base.Task.forward``)."""

    #: torch.compile's backend (tests set ``eager``: Dynamo's tracing and guards without code generation)
    backend: str = "inductor"

    def __init__(self, settings: SpeedSettings) -> None:
        self.settings = settings
        self._view: CompiledNetwork | None = None
        self._placement: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.settings.channels_last:
            pl_module.network.to(memory_format=torch.channels_last)  # 4-D weights; device moves keep the layout

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        self._placement = getattr(datamodule, "placement", None)
        if self.settings.compile == "off" or self._view is not None:
            return
        if self.backend == "inductor":
            import torch._inductor.config as inductor_config

            inductor_config.compile_threads = self.settings.threads  # packed jobs: not one compiler per core each
        self._view = CompiledNetwork(pl_module.network, self.settings.compile, self.backend)
        pl_module.compiled = self._view
        log.info("compile=%s: the network is compiled at its first step without forward hooks; steps that "
                 "diagnostics hook run eagerly", self.settings.compile)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.compiled = None  # the test is one pass: eager beats compiling its graphs

    def run_summary(self) -> dict[str, Any]:
        speed = self.settings.record()
        if self._placement is not None:
            speed["data"] = self._placement.record()
        if self._view is not None:
            speed["calls"] = dict(self._view.calls)
        return {"speed": speed}
