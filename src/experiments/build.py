"""Turn a validated config into the objects a run needs: data module, network, task, callbacks, logger, trainer.

Models receive the layer factories their constructor asks for (``act_layer``, ``pool_layer``,
``norm_layer``, ``upsample_layer``), so adding a swappable part means one YAML group plus one parameter name,
and a model never names a concrete activation or normalisation.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

#: config group -> constructor parameter that receives its factory
FACTORY_GROUPS = {
    "activation": "act_layer", "pooling": "pool_layer", "norm": "norm_layer", "upsampling": "upsample_layer",
}


def build_factories(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate every layer-factory group present in the config, keyed by constructor parameter."""
    return {param: instantiate(cfg[group]) for group, param in FACTORY_GROUPS.items() if group in cfg}


def build_network(cfg: DictConfig, factories: dict[str, Any] | None = None):
    """The model with its factories (and, for the shared encoder's models, its ``EncoderSpec``) injected, initialised
    by ``cfg.init.scheme`` scaled by the activation's gain."""
    from experiments.layers.init import initialise

    factories = build_factories(cfg) if factories is None else factories
    model_cls = get_class(cfg.model._target_)
    accepted = inspect.signature(model_cls).parameters
    node: Any = OmegaConf.to_container(cfg.model, resolve=True)
    parts = {k: v for k, v in factories.items() if k in accepted}
    declared = getattr(model_cls, "ENCODER", None)
    if declared is not None:  # the flat keys (model.width=8) become the one EncoderSpec the model takes
        parts["encoder"], node = declared.split(node)
    # Factories and the spec are passed after instantiation: handing dataclasses to Hydra would turn them into configs.
    network = instantiate(node, _convert_="all", _partial_=True)(**parts)
    gain = factories["act_layer"].gain if "act_layer" in factories else 1.0
    network = initialise(network, cfg.init.scheme, gain)
    for note in getattr(network, "notes", ()):  # a choice that found nothing to change (models/zoo.py), said once
        print(f"note: {note}", file=sys.stderr)
    weights = cfg.model.get("weights")
    if weights:  # pretrained weights of a standard architecture: a local file, after the init it would undo
        from experiments.run.checkpoints import load_state_dict_file

        network.load_pretrained(load_state_dict_file(weights, key="model.weights"), weights)
    return network


def build_datamodule(cfg: DictConfig, speed: Any = None):
    """The ``data`` group's module, holding the ``augment`` group it applies to training batches on the device.
    ``speed``: the run's :class:`~experiments.speed.settings.SpeedSettings` (built from ``cfg`` when not given)."""
    from experiments.speed.settings import SpeedSettings

    datamodule = instantiate(cfg.data, _convert_="all")
    if hasattr(datamodule, "device_budget_bytes"):  # in-memory data: how much may live on the GPU (data/placement.py)
        datamodule.device_budget_bytes = (speed or SpeedSettings.from_config(cfg)).device_budget_bytes()
    if cfg.get("augment") is not None:  # absent from the config.yaml of runs older than the group
        augment = instantiate(cfg.augment)
        datamodule.augment = augment if augment.active else None
    return datamodule


def build_task(cfg: DictConfig, network=None):
    """The LightningModule for the run's task (``cfg.data.task``, or the model's own: an autoencoder reconstructs
    whatever the data) holding the network, loss, optimiser and schedule."""
    from experiments.specs import TASKS, run_task

    network = build_network(cfg) if network is None else network
    task_cls = get_class(TASKS[run_task(cfg)].builder)
    return task_cls(
        network=network,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        num_classes=int(cfg.data.num_classes),
        # segmentation data's unlabelled pixels (VOC's 255 borders), left out of the metrics as of the loss
        **({"ignore_index": int(cfg.data.ignore_index)} if cfg.data.get("ignore_index") is not None else {}),
    )


def build_callbacks(cfg: DictConfig, task, speed: Any = None) -> list:
    """Every callback of a run, in the order they must run: the best checkpoint (first, so it is
    ``trainer.checkpoint_callback``), ``last.ckpt`` after every epoch, history, the ``callbacks`` group (early stopping,
    LR monitor, EMA/SWA, ...) and the ``diagnostics`` group, then exact mid-epoch resume state and SIGINT/SIGTERM
    handling (``ResumeState`` before ``GracefulStop``: a stop checkpoint includes it). ``speed``: the run's
    :class:`~experiments.speed.settings.SpeedSettings` (built from ``cfg`` when not given).

    A ``monitor: null`` in the group means the task's own metric (``val/acc``, ``val/miou``...), and ``mode: null``
    the monitor's direction, so that early stopping and checkpointing follow the task without being told."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from experiments.run.bad_data import CheckpointOnBadFile
    from experiments.run.checkpoints import InitialWeights
    from experiments.run.history import HistoryRecorder
    from experiments.run.layout import BEST, LAST, RANKED_BEST, RunDir
    from experiments.run.signals import GracefulStop
    from experiments.run.state import ResumeState
    from experiments.speed.compile import SpeedSwitches
    from experiments.speed.settings import SpeedSettings

    run = RunDir(str(cfg.run_dir))
    group = {name: node for name, node in _callbacks_group(cfg).items()
             if isinstance(node, DictConfig) and "_target_" in node}
    best = group.pop("model_checkpoint", None)
    callbacks: list = []
    if best is not None:
        top_k = best.get("save_top_k", 1)
        callbacks.append(instantiate(
            best, **_monitor_defaults(best, task), dirpath=str(run.checkpoints),
            filename=BEST if top_k == 1 else RANKED_BEST, auto_insert_metric_name=False, save_last=False))
    if best is None or best.get("save_last", True):
        # Lightning 2.6's own save_last writes last.ckpt only when a best one is saved: a checkpoint callback
        # without a monitor writes it after every epoch, which exact resume relies on
        callbacks.append(ModelCheckpoint(dirpath=run.checkpoints, filename=LAST, monitor=None, save_top_k=1,
                                         enable_version_counter=False))
    callbacks += [InitialWeights(run.init_checkpoint), HistoryRecorder()]
    for name, node in group.items():
        if name == "lr_monitor" and not cfg.get("logger"):
            continue  # Lightning refuses a learning-rate monitor without a logger; logger=[] drops it quietly
        callbacks.append(instantiate(node, **_monitor_defaults(node, task)))
    for node in (cfg.get("diagnostics") or {}).values():
        if isinstance(node, DictConfig) and "_target_" in node:
            callbacks.append(instantiate(node))
    callbacks.append(SpeedSwitches(speed or SpeedSettings.from_config(cfg)))  # channels_last, compile; `speed` record
    # a bad streamed file stops like a signal: last.ckpt at the batch before it (run/bad_data.py)
    callbacks += [ResumeState(), GracefulStop(run.last_checkpoint), CheckpointOnBadFile(run.last_checkpoint)]
    return callbacks


def _callbacks_group(cfg: DictConfig) -> DictConfig:
    """The ``callbacks`` node; without one (``callbacks=[]``, or the ``config.yaml`` of a run from before the group,
    being resumed) the best checkpoint and LR monitor such runs always had, from their files in ``conf/callbacks``."""
    if "callbacks" in cfg:
        return cfg.callbacks or OmegaConf.create({})
    from experiments.config import conf_dir

    return OmegaConf.merge(*(OmegaConf.load(conf_dir() / "callbacks" / f"{name}.yaml")
                             for name in ("model_checkpoint", "lr_monitor")))


def _monitor_defaults(node: DictConfig, task: Any) -> dict[str, Any]:
    """``monitor: null`` -> the task's metric; ``mode: null`` -> min for a ``*loss`` metric, else max."""
    if "monitor" not in node:
        return {}
    monitor = node.monitor if node.monitor is not None else task.monitor
    if node.get("mode") is not None:
        mode = node.mode
    elif node.monitor is None:
        mode = task.monitor_mode
    else:
        mode = "min" if str(monitor).endswith("loss") else "max"
    return {"monitor": monitor, "mode": mode}


def build_logger(cfg: DictConfig) -> list | bool:
    """Every logger of the ``logger`` list (TensorBoard and CSV by default), or False for none (``logger=[]``).

    A run's ``config.yaml`` from before the list (one logger, ``_target_`` at the top) still builds. MLflow runs get
    the run dir as their name and the run's tags, and a directory store (``file:`` URI) is allowed explicitly: MLflow 3
    refuses one unless ``MLFLOW_ALLOW_FILE_STORE`` says otherwise."""
    node = cfg.get("logger")
    if not node:
        return False
    nodes = [node] if "_target_" in node else [
        item for item in node.values() if isinstance(item, DictConfig) and "_target_" in item]
    loggers = []
    for item in nodes:
        extra: dict[str, Any] = {}
        if str(item._target_).endswith("CSVLogger"):
            extra = _csv_version(item)
        if str(item._target_).endswith("MLFlowLogger"):
            if str(item.get("tracking_uri") or "").startswith("file:"):
                import os

                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            if item.get("run_name") is None:
                extra["run_name"] = _mlflow_run_name(cfg)
            if item.get("tags") is None and cfg.get("tags"):
                extra["tags"] = {str(tag): "true" for tag in cfg.tags}
        loggers.append(instantiate(item, **extra))
    return loggers or False


def _csv_version(node: DictConfig) -> dict[str, Any]:
    """A resumed run's CSV rows go to ``<name>/resume-<n>/``: Lightning's CSVLogger deletes a ``metrics.csv`` it finds
    in its folder, which would throw away every row from before the interruption."""
    from pathlib import Path

    if node.get("version") != "" or not (Path(str(node.save_dir)) / str(node.name) / "metrics.csv").is_file():
        return {}
    n = 1
    while (Path(str(node.save_dir)) / str(node.name) / f"resume-{n}").exists():
        n += 1
    return {"version": f"resume-{n}"}


def _mlflow_run_name(cfg: DictConfig) -> str:
    """The run dir relative to ``paths.output_dir`` (``runs/2025-01-31/12-00-00-000000``), else its full path."""
    from pathlib import Path

    run_dir = Path(str(cfg.run_dir))
    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    try:
        return str(run_dir.relative_to(str(output_dir))) if output_dir else str(run_dir)
    except ValueError:
        return str(run_dir)


def build_profiler(cfg: DictConfig) -> Any | None:
    """``trainer.profiler=simple|advanced|pytorch`` as Lightning's profiler writing into ``<run dir>/profiler/``
    (Lightning given the bare name would only print its summary); None without one."""
    name = OmegaConf.select(cfg, "trainer.profiler", default=None)
    if not isinstance(name, str):
        return None
    from lightning.pytorch import profilers

    from experiments.run.layout import PROFILE, RunDir

    profiler_cls = {"simple": profilers.SimpleProfiler, "advanced": profilers.AdvancedProfiler,
                    "pytorch": profilers.PyTorchProfiler}[name]
    return profiler_cls(dirpath=str(RunDir(str(cfg.run_dir)).profiler), filename=PROFILE)


def build_trainer(cfg: DictConfig, callbacks: list, logger: Any, checkpoint: dict[str, Any] | None = None,
                  **overrides: Any):
    """The Lightning Trainer of ``cfg.trainer``; every checkpoint it reads goes through the safe loader, and
    ``checkpoint`` (already loaded and verified by the resume plan) is handed to ``fit`` without a second read."""
    from experiments.run.checkpoints import SafeCheckpointIO
    from experiments.run.console import LogIntervalCap, quiet_lightning_tips, without_version
    from experiments.speed.settings import lightning_args

    profiler = build_profiler(cfg)  # debug=profiler: its report in the run dir
    quiet_lightning_tips()  # Lightning's "💡 Tip:" adverts (litlogger) at every start
    shown = overrides.get("enable_progress_bar", OmegaConf.select(cfg, "trainer.enable_progress_bar", default=True))
    # log_every_n_steps capped by the epoch's batches (known once fit has set the data up): step values always logged;
    # before the progress bar, so that its note is printed before the bar starts drawing
    callbacks = without_version([*callbacks, LogIntervalCap()], bool(shown))  # no logger version (v_num) on the bar
    # the trainer node without this project's speed keys (threads, compile, ...: experiments.speed)
    return instantiate(lightning_args(cfg.trainer), callbacks=callbacks, logger=logger,
                       plugins=[SafeCheckpointIO(verified=checkpoint)],
                       **({"profiler": profiler} if profiler is not None else {}), **overrides)
