"""Shared pieces of the checks: how a failed check becomes a ConfigError, and facts read off a config (its model option,
its task, its processes) that several checks need.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.errors import ConfigError
from experiments.options import (
    MODELS,
)


def _target(node: Any) -> str:
    return str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""


def model_kind(cfg: DictConfig) -> str:
    """The model class name (CNN, ResNet, FCN, ...) from its ``_target_``."""
    return _target(cfg.model).rsplit(".", 1)[-1]


def model_option(cfg: DictConfig) -> str | None:
    """The model option (``cnn``, ``fcn``, ...) registered for the config's model class; None for another class."""
    kind = model_kind(cfg)
    return next((option for option, facts in MODELS.items() if facts.cls == kind), None)


def _listing(items: Iterable[str], last: str = "and") -> str:
    """``a, b and c`` (or ``a, b or c``)."""
    items = list(items)
    return ", ".join(items[:-1]) + f" {last} {items[-1]}" if len(items) > 1 else "".join(items)


def _require(cond: bool, key: str, value: Any, problem: str, fix: str) -> None:
    if not cond:
        raise ConfigError(key, value, problem, fix)


def _positive_int(cfg: DictConfig, key: str, minimum: int = 1) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        key, value, f"it must be an integer >= {minimum}", f"set {key} to a value such as {max(minimum, 1)}",
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _device_count(devices: Any) -> int | None:
    """Processes/devices the config asks for; None when decided at run time (auto, -1) or not a count at all."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices >= 0 else None
    if isinstance(devices, ListConfig):
        return len(devices) if all(isinstance(d, int) and d >= 0 for d in devices) else 0
    if isinstance(devices, str) and devices.replace(",", "").strip().isdigit():
        parts = [d for d in devices.split(",") if d.strip()]
        return len(parts) if "," in devices else int(devices)
    return None


def _strategy(trainer: DictConfig) -> str:
    """``ddp``, ``ddpstrategy`` (a ``_target_``), ``auto``... lower-cased, for the DDP checks."""
    strategy = trainer.get("strategy", "auto")
    if isinstance(strategy, DictConfig):
        return _target(strategy).rsplit(".", 1)[-1].lower()
    return str(strategy).lower()


def _processes(cfg: DictConfig) -> int:
    """How many training processes share the data (DDP with a known device count), else 1."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig) or not _strategy(trainer).startswith("ddp"):
        return 1
    return _device_count(trainer.get("devices")) or 1


def _hydra_mode(cfg: DictConfig) -> str | None:
    """``RUN`` or ``MULTIRUN`` under the CLI (Hydra's record), None when composed without Hydra (tests, API)."""
    node = cfg.get("hydra") if "hydra" in cfg else None
    if isinstance(node, DictConfig) and node.get("mode") is not None:
        return str(node.mode).rsplit(".", 1)[-1]
    from hydra.core.hydra_config import HydraConfig  # Hydra only, no torch: this module stays cheap

    return str(HydraConfig.get().mode).rsplit(".", 1)[-1] if HydraConfig.initialized() else None


def _predicts(option: str | None) -> str:
    """What a model option predicts; a model class outside the registry counts as a classifier."""
    return MODELS[option].task if option in MODELS else "classification"


def run_task(cfg: DictConfig) -> str:
    """What the run learns: the model's task when the model sets it (reconstruction: its own input, whatever the
    data), else the data's (classification or segmentation, which :func:`_check_task` makes the model agree with)."""
    if _predicts(model_option(cfg)) == "reconstruction":
        return "reconstruction"
    return str(OmegaConf.select(cfg, "data.task", default="classification"))


def _choice(cfg: DictConfig, group: str, fallback: str) -> str:
    """The option of ``group`` as the user chose it (Hydra's record), else ``fallback``."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get(group) or fallback)

def _pretraining(cfg: DictConfig) -> bool:
    """``pretrain=autoencoder`` (a ``pretrain.model`` to train first); ``pretrain=none`` has none."""
    node = cfg.get("pretrain")
    return isinstance(node, DictConfig) and isinstance(node.get("model"), DictConfig)
