"""Rules of the ``norm`` group: the retired ``model.norm`` key (an old experiment file) is refused with the sentence
``config.upgrade_config`` gives, and group norm needs a positive group count.
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.config import retired_key_error
from experiments.validation.checks import positive_int
from experiments.validation.registry import rule


@rule("norm")
def _check_norm(cfg: DictConfig) -> None:
    if isinstance(cfg.get("model"), DictConfig) and "norm" in cfg.model:  # an old config file or experiment
        raise retired_key_error("model.norm", cfg.model.norm)
    positive_int(cfg, "norm.groups")
