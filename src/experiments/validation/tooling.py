"""Checks of the run-tooling keys: the ``callbacks`` and ``logger`` groups, Lightning's debug switches (the ``debug``
group), ``tags`` and ``print_config``; ``validation.validate`` runs them with the model and data checks.

Kept apart from ``validation.py`` because they concern how a run is watched and stopped, not what it trains, and so
that each module stays readable. The same rules hold: OmegaConf only (no torch, no Lightning), and every mistake is
one ``ConfigError`` sentence naming the key, the value and the fix, before anything is built. Most of these would
otherwise surface from Lightning only at the end of the first epoch, or as a traceback.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.errors import ConfigError

#: ``trainer.profiler`` names that ``build.build_profiler`` turns into Lightning's profilers
PROFILERS = ("simple", "advanced", "pytorch")
#: what a callback can monitor: a metric logged during fit (test metrics exist only after it)
_MONITORED = re.compile(r"^(train|val)/\S+$")
#: ``_target_`` class names of the weight-averaging callbacks (one at a time)
_AVERAGING = {"EMAWeightAveraging": "ema", "WeightAveraging": "ema", "StochasticWeightAveraging": "swa"}


def _require(cond: bool, key: str, value: Any, problem: str, fix: str) -> None:
    if not cond:
        raise ConfigError(key, value, problem, fix)


def _int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _class(node: Any) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(node, DictConfig) else ""


def _nodes(cfg: DictConfig, group: str) -> dict[str, DictConfig]:
    """The ``name: {_target_: ...}`` entries of a list group (``callbacks``, ``logger``)."""
    node = cfg.get(group)
    if not isinstance(node, DictConfig) or "_target_" in node:  # an older run's single logger
        return {group: node} if isinstance(node, DictConfig) else {}
    return {str(name): item for name, item in node.items() if isinstance(item, DictConfig)}


def _check_tags(cfg: DictConfig) -> None:
    tags = cfg.get("tags")
    if tags is None or isinstance(tags, str):
        return
    ok = isinstance(tags, ListConfig) and all(isinstance(t, (str, int)) and str(t).strip() for t in tags)
    _require(ok, "tags", tags, "tags are a list of names", "use e.g. tags=[baseline,lr-study], or tags=[] for none")


def _check_print_config(cfg: DictConfig) -> None:
    setting = cfg.get("print_config", True)
    if isinstance(setting, bool):
        return
    groups = [str(k) for k in cfg if isinstance(cfg._get_node(k), DictConfig) and k != "hydra"]
    ok = isinstance(setting, ListConfig) and all(str(g) in groups for g in setting)
    _require(ok, "print_config", setting, "it is true, false, or a list of the groups to expand "
             f"({', '.join(groups)})", "use e.g. print_config=[model,optimizer] or print_config=false")


def _check_monitor(name: str, node: DictConfig) -> None:
    if "monitor" in node and node.monitor is not None:
        _require(isinstance(node.monitor, str) and bool(_MONITORED.match(node.monitor)), f"callbacks.{name}.monitor",
                 node.monitor, "callbacks watch a metric that training or validation logs (train/... or val/...)",
                 f"use e.g. callbacks.{name}.monitor=val/loss, or null for the task's own metric")
    if node.get("mode") is not None:
        _require(node.mode in ("min", "max"), f"callbacks.{name}.mode", node.mode, "the mode is min or max",
                 f"use callbacks.{name}.mode=min for a loss, max for an accuracy, or null to infer it")


def _check_averaging(cfg: DictConfig, name: str, node: DictConfig, kind: str) -> None:
    key = f"callbacks.{name}"
    if kind == "ema":
        decay = node.get("decay", 0.999)
        _require(_number(decay) and 0 <= decay <= 1, f"{key}.decay", decay, "the EMA decay is a weight in [0, 1]",
                 f"use e.g. {key}.decay=0.999")
        every = node.get("update_every_n_steps", 1)
        _require(_int(every, 1), f"{key}.update_every_n_steps", every, "it counts optimiser steps",
                 f"use {key}.update_every_n_steps=1 or more")
        return
    lrs = node.get("swa_lrs")
    values = list(lrs) if isinstance(lrs, ListConfig) else [lrs]
    _require(all(isinstance(v, float) and v > 0 for v in values), f"{key}.swa_lrs", lrs,
             "Lightning's SWA takes a positive float learning rate (or a list, one per parameter group)",
             f"use e.g. {key}.swa_lrs=0.01")
    start, epochs = node.get("swa_epoch_start", 0.8), OmegaConf.select(cfg, "trainer.max_epochs")
    ok = (_int(start, 1) and (not _int(epochs, 1) or start <= epochs)) or (isinstance(start, float) and 0 < start <= 1)
    _require(ok, f"{key}.swa_epoch_start", start, f"averaging starts at an epoch number from 1 to trainer.max_epochs"
             f"={epochs}, or at a fraction of the run in (0, 1]", f"use e.g. {key}.swa_epoch_start=0.75")
    _require(_int(node.get("annealing_epochs", 10), 1), f"{key}.annealing_epochs", node.get("annealing_epochs"),
             "the learning rate anneals to swa_lrs over a whole number of epochs", f"use {key}.annealing_epochs=1")
    strategy = node.get("annealing_strategy", "cos")
    _require(strategy in ("cos", "linear"), f"{key}.annealing_strategy", strategy, "SWALR anneals by cos or linear",
             f"use {key}.annealing_strategy=cos")
    stopper = next((n for n, item in _nodes(cfg, "callbacks").items() if _class(item) == "EarlyStopping"), None)
    _require(stopper is None, "callbacks", f"[...,{stopper},{name}]",
             "SWA swaps its average in only when the last epoch ends, so an early stop would leave the raw weights",
             f"drop {stopper} from the callbacks list, or use ema, whose average is kept all along")


def _check_callbacks(cfg: DictConfig) -> None:
    averaging: list[str] = []
    for name, node in _nodes(cfg, "callbacks").items():
        kind = _class(node)
        _check_monitor(name, node)
        if kind == "ModelCheckpoint":
            top_k, last = node.get("save_top_k", 1), node.get("save_last", True)
            _require(_int(top_k, -1), f"callbacks.{name}.save_top_k", top_k, "it is how many best checkpoints to "
                     "keep: -1 for all, 0 for none", f"use e.g. callbacks.{name}.save_top_k=1")
            _require(isinstance(last, bool), f"callbacks.{name}.save_last", last, "it is true (checkpoints/last.ckpt "
                     "after every epoch, what resume=true continues from) or false", f"use callbacks.{name}.save_last="
                     "true")
        elif kind == "EarlyStopping":
            patience, delta = node.get("patience", 3), node.get("min_delta", 0.0)
            _require(_int(patience, 0), f"callbacks.{name}.patience", patience, "it counts validation checks without "
                     "improvement", f"use e.g. callbacks.{name}.patience=3")
            _require(_number(delta) and delta >= 0, f"callbacks.{name}.min_delta", delta, "the least change that "
                     "counts as an improvement cannot be negative", f"use e.g. callbacks.{name}.min_delta=0")
        elif kind == "RichProgressBar":
            enabled = OmegaConf.select(cfg, "trainer.enable_progress_bar", default=True)
            _require(bool(enabled), "trainer.enable_progress_bar", enabled, f"callbacks.{name} is a progress bar",
                     f"use trainer.enable_progress_bar=true, or drop {name} from the callbacks list")
        elif kind in _AVERAGING:
            _check_averaging(cfg, name, node, _AVERAGING[kind])
            averaging.append(name)
    _require(len(averaging) <= 1, "callbacks", f"[...,{','.join(averaging)}]",
             "two weight averages would each overwrite the weights the other tests", "keep one of "
             f"{' and '.join(averaging)}")


def _check_loggers(cfg: DictConfig) -> None:
    for name, node in _nodes(cfg, "logger").items():
        _require("_target_" in node, f"logger.{name}", "{...}", "every entry of the logger list is a Lightning logger "
                 "with a _target_", "pick loggers from conf/logger, e.g. logger=[tensorboard,csv,mlflow]")
        if _class(node) != "MLFlowLogger":
            continue
        _require(importlib.util.find_spec("mlflow") is not None, "logger", name, "MLflow is not installed",
                 "install it with pip install -e '.[mlflow]', or drop mlflow from the logger list")
        uri = node.get("tracking_uri")
        _require(isinstance(uri, str) and bool(uri.strip()), f"logger.{name}.tracking_uri", uri,
                 "without a tracking URI MLflow would write ./mlruns wherever the command starts",
                 f"use e.g. logger.{name}.tracking_uri=sqlite:////abs/path/mlflow.db or file:/abs/path/mlruns")


def _fraction_or_count(value: Any) -> bool:
    return _int(value, 0) or (isinstance(value, float) and 0 <= value <= 1)


def _check_debug_switches(cfg: DictConfig) -> None:
    """Lightning's debugging switches (set by the ``debug`` group, or by hand)."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    profiler = trainer.get("profiler")
    _require(profiler is None or profiler in PROFILERS or isinstance(profiler, DictConfig), "trainer.profiler",
             profiler, f"the profilers are {', '.join(PROFILERS)}", "use debug=profiler, or trainer.profiler=pytorch")
    fdr = trainer.get("fast_dev_run", False)
    _require(isinstance(fdr, bool) or _int(fdr, 0), "trainer.fast_dev_run", fdr,
             "it is true or a number of batches", "use debug=fdr (one batch of each split)")
    for key in ("overfit_batches", "limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer.get(key)
        _require(value is None or _fraction_or_count(value), f"trainer.{key}", value,
                 "it is a number of batches or a fraction of them in [0, 1]", f"use e.g. trainer.{key}=4")


def check_tooling(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first problem in the run-tooling keys."""
    _check_tags(cfg)
    _check_print_config(cfg)
    _check_callbacks(cfg)
    _check_loggers(cfg)
    _check_debug_switches(cfg)
