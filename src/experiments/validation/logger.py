"""Rules of the ``logger`` group: every entry is a Lightning logger; MLflow is installed and has a tracking URI.
"""

from __future__ import annotations

import importlib.util

from omegaconf import DictConfig

from experiments.validation.checks import class_name, entries, require
from experiments.validation.registry import rule


@rule("logger")
def _check_loggers(cfg: DictConfig) -> None:
    for name, node in entries(cfg, "logger").items():
        require("_target_" in node, f"logger.{name}", "{...}", "every entry of the logger list is a Lightning logger "
                "with a _target_", "pick loggers from conf/logger, e.g. logger=[tensorboard,csv,mlflow]")
        if class_name(node) != "MLFlowLogger":
            continue
        require(importlib.util.find_spec("mlflow") is not None, "logger", name, "MLflow is not installed",
                "install it with pip install -e '.[mlflow]', or drop mlflow from the logger list")
        uri = node.get("tracking_uri")
        require(isinstance(uri, str) and bool(uri.strip()), f"logger.{name}.tracking_uri", uri,
                "without a tracking URI MLflow would write ./mlruns wherever the command starts",
                f"use e.g. logger.{name}.tracking_uri=sqlite:////abs/path/mlflow.db or file:/abs/path/mlruns")
