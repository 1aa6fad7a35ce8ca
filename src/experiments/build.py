"""Turn a validated config into the objects a run needs: data module, network, task, callbacks, logger, trainer.

Models receive the layer factories their constructor asks for (``act_layer``, ``pool_layer``,
``norm_layer``, ``upsample_layer``), so adding a swappable part means one YAML group plus one parameter name,
and a model never names a concrete activation or normalisation.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

#: config group -> constructor parameter that receives its factory
FACTORY_GROUPS = {
    "activation": "act_layer", "pooling": "pool_layer", "norm": "norm_layer", "upsampling": "upsample_layer",
}

#: data task -> LightningModule class
TASKS = {
    "classification": "experiments.tasks.classification.ClassificationTask",
    "segmentation": "experiments.tasks.segmentation.SegmentationTask",
}


def build_factories(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate every layer-factory group present in the config, keyed by constructor parameter."""
    return {param: instantiate(cfg[group]) for group, param in FACTORY_GROUPS.items() if group in cfg}


def build_network(cfg: DictConfig, factories: dict[str, Any] | None = None):
    """The model with its factories injected, initialised by ``cfg.init.scheme`` scaled by the activation's gain."""
    from experiments.layers.init import initialise

    factories = build_factories(cfg) if factories is None else factories
    accepted = inspect.signature(get_class(cfg.model._target_)).parameters
    # Factories are passed after instantiation: handing dataclasses to Hydra would turn them into configs.
    make = instantiate(cfg.model, _convert_="all", _partial_=True)
    network = make(**{k: v for k, v in factories.items() if k in accepted})
    gain = factories["act_layer"].gain if "act_layer" in factories else 1.0
    return initialise(network, cfg.init.scheme, gain)


def build_datamodule(cfg: DictConfig):
    return instantiate(cfg.data, _convert_="all")


def build_task(cfg: DictConfig, network=None):
    """The LightningModule for ``cfg.data.task`` holding the network, loss, optimiser and schedule."""
    network = build_network(cfg) if network is None else network
    task_cls = get_class(TASKS[cfg.data.task])
    return task_cls(
        network=network,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        num_classes=int(cfg.data.num_classes),
    )


def build_callbacks(cfg: DictConfig, task) -> list:
    """Every callback of a run, in the order they must run: checkpointing (best by the task's monitor; last
    after every epoch), history, LR monitor, the ``callbacks``/``diagnostics`` groups, then exact mid-epoch
    resume state and SIGINT/SIGTERM handling (``ResumeState`` before ``GracefulStop``: a stop checkpoint
    includes it)."""
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from experiments.run.history import HistoryRecorder
    from experiments.run.layout import BEST, LAST, RunDir
    from experiments.run.signals import GracefulStop
    from experiments.run.state import ResumeState

    run = RunDir(str(cfg.run_dir))
    callbacks: list = [
        ModelCheckpoint(dirpath=run.checkpoints, filename=BEST, monitor=task.monitor, mode=task.monitor_mode,
                        save_last=True, auto_insert_metric_name=False),
        # Lightning 2.6's save_last writes last.ckpt only when the best one improves: a second checkpoint
        # callback without a monitor writes it after every epoch, which exact resume relies on
        ModelCheckpoint(dirpath=run.checkpoints, filename=LAST, monitor=None, save_top_k=1,
                        enable_version_counter=False),
        HistoryRecorder(),
    ]
    if cfg.get("logger") is not None:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    # every `_target_` node under the `callbacks` and `diagnostics` groups is one more callback
    for group in ("callbacks", "diagnostics"):
        for node in (cfg.get(group) or {}).values():
            if isinstance(node, DictConfig) and "_target_" in node:
                callbacks.append(instantiate(node))
    callbacks += [ResumeState(), GracefulStop(run.last_checkpoint)]
    return callbacks


def build_logger(cfg: DictConfig):
    return instantiate(cfg.logger) if cfg.get("logger") is not None else False


def build_trainer(cfg: DictConfig, callbacks: list, logger: Any, checkpoint: dict[str, Any] | None = None,
                  **overrides: Any):
    """The Lightning Trainer of ``cfg.trainer``; every checkpoint it reads goes through the safe loader, and
    ``checkpoint`` (already loaded and verified by the resume plan) is handed to ``fit`` without a second read."""
    from experiments.run.checkpoints import SafeCheckpointIO

    return instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                       plugins=[SafeCheckpointIO(verified=checkpoint)], **overrides)
