"""Rules of the ``callbacks`` group: what a callback monitors, checkpoint and early-stopping knobs, the progress bar,
and the weight averages (EMA, SWA: one at a time, and SWA not with early stopping).
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.validation.checks import class_name, entries, is_int, is_number, require
from experiments.validation.registry import rule

#: what a callback can monitor: a metric logged during fit (test metrics exist only after it)
_MONITORED = re.compile(r"^(train|val)/\S+$")
#: ``_target_`` class names of the weight-averaging callbacks (one at a time)
_AVERAGING = {"EMAWeightAveraging": "ema", "WeightAveraging": "ema", "StochasticWeightAveraging": "swa"}


def _check_monitor(name: str, node: DictConfig) -> None:
    if "monitor" in node and node.monitor is not None:
        require(isinstance(node.monitor, str) and bool(_MONITORED.match(node.monitor)), f"callbacks.{name}.monitor",
                node.monitor, "callbacks watch a metric that training or validation logs (train/... or val/...)",
                f"use e.g. callbacks.{name}.monitor=val/loss, or null for the task's own metric")
    if node.get("mode") is not None:
        require(node.mode in ("min", "max"), f"callbacks.{name}.mode", node.mode, "the mode is min or max",
                f"use callbacks.{name}.mode=min for a loss, max for an accuracy, or null to infer it")


def _check_averaging(cfg: DictConfig, name: str, node: DictConfig, kind: str) -> None:
    key = f"callbacks.{name}"
    if kind == "ema":
        decay = node.get("decay", 0.999)
        require(is_number(decay) and 0 <= decay <= 1, f"{key}.decay", decay, "the EMA decay is a weight in [0, 1]",
                f"use e.g. {key}.decay=0.999")
        every = node.get("update_every_n_steps", 1)
        require(is_int(every, 1), f"{key}.update_every_n_steps", every, "it counts optimiser steps",
                f"use {key}.update_every_n_steps=1 or more")
        return
    lrs = node.get("swa_lrs")
    values = list(lrs) if isinstance(lrs, ListConfig) else [lrs]
    require(all(isinstance(v, float) and v > 0 for v in values), f"{key}.swa_lrs", lrs,
            "Lightning's SWA takes a positive float learning rate (or a list, one per parameter group)",
            f"use e.g. {key}.swa_lrs=0.01")
    start, epochs = node.get("swa_epoch_start", 0.8), OmegaConf.select(cfg, "trainer.max_epochs")
    ok = (is_int(start, 1) and (not is_int(epochs, 1) or start <= epochs)) \
        or (isinstance(start, float) and 0 < start <= 1)
    require(ok, f"{key}.swa_epoch_start", start, f"averaging starts at an epoch number from 1 to trainer.max_epochs"
            f"={epochs}, or at a fraction of the run in (0, 1]", f"use e.g. {key}.swa_epoch_start=0.75")
    require(is_int(node.get("annealing_epochs", 10), 1), f"{key}.annealing_epochs", node.get("annealing_epochs"),
            "the learning rate anneals to swa_lrs over a whole number of epochs", f"use {key}.annealing_epochs=1")
    strategy = node.get("annealing_strategy", "cos")
    require(strategy in ("cos", "linear"), f"{key}.annealing_strategy", strategy, "SWALR anneals by cos or linear",
            f"use {key}.annealing_strategy=cos")
    stopper = next((n for n, item in entries(cfg, "callbacks").items() if class_name(item) == "EarlyStopping"), None)
    require(stopper is None, "callbacks", f"[...,{stopper},{name}]",
            "SWA swaps its average in only when the last epoch ends, so an early stop would leave the raw weights",
            f"drop {stopper} from the callbacks list, or use ema, whose average is kept all along")


@rule("callbacks")
def _check_callbacks(cfg: DictConfig) -> None:
    averaging: list[str] = []
    for name, node in entries(cfg, "callbacks").items():
        kind = class_name(node)
        _check_monitor(name, node)
        if kind == "ModelCheckpoint":
            top_k, last = node.get("save_top_k", 1), node.get("save_last", True)
            require(is_int(top_k, -1), f"callbacks.{name}.save_top_k", top_k, "it is how many best checkpoints to "
                    "keep: -1 for all, 0 for none", f"use e.g. callbacks.{name}.save_top_k=1")
            require(isinstance(last, bool), f"callbacks.{name}.save_last", last, "it is true (checkpoints/last.ckpt "
                    "after every epoch, what resume=true continues from) or false", f"use callbacks.{name}.save_last="
                    "true")
        elif kind == "EarlyStopping":
            patience, delta = node.get("patience", 3), node.get("min_delta", 0.0)
            require(is_int(patience, 0), f"callbacks.{name}.patience", patience, "it counts validation checks without "
                    "improvement", f"use e.g. callbacks.{name}.patience=3")
            require(is_number(delta) and delta >= 0, f"callbacks.{name}.min_delta", delta, "the least change that "
                    "counts as an improvement cannot be negative", f"use e.g. callbacks.{name}.min_delta=0")
        elif kind == "RichProgressBar":
            enabled = OmegaConf.select(cfg, "trainer.enable_progress_bar", default=True)
            require(bool(enabled), "trainer.enable_progress_bar", enabled, f"callbacks.{name} is a progress bar",
                    f"use trainer.enable_progress_bar=true, or drop {name} from the callbacks list")
        elif kind in _AVERAGING:
            _check_averaging(cfg, name, node, _AVERAGING[kind])
            averaging.append(name)
    require(len(averaging) <= 1, "callbacks", f"[...,{','.join(averaging)}]",
            "two weight averages would each overwrite the weights the other tests", "keep one of "
            f"{' and '.join(averaging)}")
