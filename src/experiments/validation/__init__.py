"""One validation pass over the composed config, before anything heavy is imported or trained.

Every mistake becomes one sentence naming the key, the bad value and the fix, raised as
``ConfigError``; the CLI prints it without a traceback. This module imports only OmegaConf.
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.validation.common import (
    _check_activation,
    _check_choices,
    _check_common,
    _check_diagnostics,
    _check_norm,
    _check_scheduler,
    _check_speed,
    _check_trainer,
    check_overrides,
)
from experiments.validation.data import _check_augment, _check_data_sizes, _check_data_source, check_evaluation_data
from experiments.validation.models import MODEL_CHECKS, _check_task
from experiments.validation.rules import model_kind, model_option, run_task
from experiments.validation.runs import _check_resume, _check_transfer
from experiments.validation.tooling import check_tooling

__all__ = ["MODEL_CHECKS", "check_evaluation_data", "check_overrides", "model_kind", "model_option", "run_task",
           "validate"]


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first problem found; return silently when the config is sound.

    Fills in one value: an image folder's ``data.num_classes``, counted from its class folders when left out."""
    _check_common(cfg)
    _check_norm(cfg)
    _check_choices(cfg)
    _check_data_source(cfg)
    _check_augment(cfg)
    _check_activation(cfg)
    _check_diagnostics(cfg)
    check_tooling(cfg)  # callbacks, logger, debug switches, tags, print_config
    _check_scheduler(cfg)
    _check_trainer(cfg)
    _check_speed(cfg)
    _check_data_sizes(cfg)
    _check_resume(cfg)
    _check_task(cfg)
    for check in MODEL_CHECKS.get(model_option(cfg), []):
        check(cfg)
    _check_transfer(cfg)
