"""The words rules are written in: how a failed check becomes one ``ConfigError`` sentence (:func:`require`), the
common shapes of a check (:func:`positive_int`, :func:`is_number` ...), and facts read off a config that several
groups' rules need (its processes, its Hydra mode, the option a user chose). OmegaConf and Hydra's record only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.errors import ConfigError


def target_of(node: Any) -> str:
    """A node's ``_target_`` (empty when it has none)."""
    return str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""


def listing(items: Iterable[str], last: str = "and") -> str:
    """``a, b and c`` (or ``a, b or c``)."""
    items = list(items)
    return ", ".join(items[:-1]) + f" {last} {items[-1]}" if len(items) > 1 else "".join(items)


def require(cond: bool, key: str, value: Any, problem: str, fix: str) -> None:
    """Raise ``ConfigError(key, value, problem, fix)`` unless ``cond``: every rule's one sentence."""
    if not cond:
        raise ConfigError(key, value, problem, fix)


def positive_int(cfg: DictConfig, key: str, minimum: int = 1) -> None:
    """``key`` is an integer >= ``minimum`` (booleans are not integers); absent or null passes."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        key, value, f"it must be an integer >= {minimum}", f"set {key} to a value such as {max(minimum, 1)}",
    )


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def device_count(devices: Any) -> int | None:
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


def strategy_name(trainer: DictConfig) -> str:
    """``ddp``, ``ddpstrategy`` (a ``_target_``), ``auto``... lower-cased, for the DDP checks."""
    strategy = trainer.get("strategy", "auto")
    if isinstance(strategy, DictConfig):
        return target_of(strategy).rsplit(".", 1)[-1].lower()
    return str(strategy).lower()


def process_count(cfg: DictConfig) -> int:
    """How many training processes share the data (DDP with a known device count), else 1."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig) or not strategy_name(trainer).startswith("ddp"):
        return 1
    return device_count(trainer.get("devices")) or 1


def hydra_mode(cfg: DictConfig) -> str | None:
    """``RUN`` or ``MULTIRUN`` under the CLI (Hydra's record), None when composed without Hydra (tests, API)."""
    node = cfg.get("hydra") if "hydra" in cfg else None
    if isinstance(node, DictConfig) and node.get("mode") is not None:
        return str(node.mode).rsplit(".", 1)[-1]
    from hydra.core.hydra_config import HydraConfig  # Hydra only, no torch: this module stays cheap

    return str(HydraConfig.get().mode).rsplit(".", 1)[-1] if HydraConfig.initialized() else None


def chosen_option(cfg: DictConfig, group: str, fallback: str) -> str:
    """The option of ``group`` as the user chose it (Hydra's record), else ``fallback``."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get(group) or fallback)


def _choices(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's record of the group choices (composed config, else the live CLI's), empty without one."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return dict(choices)


def as_typed(cfg: DictConfig, group: str, keys: Iterable[str], value: Any) -> tuple[str, Any, str]:
    """``(key, value, note)`` naming a setting the way the user made it, for a refusal's sentence: the last
    command-line override of one of ``keys`` (``trainer.strategy=ddp``), else the option of ``group`` that carries
    it (``trainer=ddp_cpu``, not the ``ddpstrategy`` its node resolves to), else ``keys``' first with ``value``.
    ``note`` says which choice picked the group's option when the user did not type it (``" (scale=gpu picks
    it)"``), empty otherwise."""
    from experiments.config import set_by
    from experiments.naming import override_key, override_value, recordable

    typed = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    if typed is None:
        from hydra.core.hydra_config import HydraConfig

        typed = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    typed = recordable([str(o) for o in typed])
    keys = tuple(keys)
    for override in reversed(typed):
        if override_key(override) in keys:
            return override_key(override), override_value(override), ""
    choices = _choices(cfg)
    option = choices.get(group)
    if option is None:
        return keys[0], value, ""
    picked = set_by(choices, typed).get(group)
    return group, option, f" ({picked} picks it)" if picked else ""


def is_pretraining(cfg: DictConfig) -> bool:
    """``pretrain=autoencoder`` (a ``pretrain.model`` to train first); ``pretrain=none`` has none."""
    node = cfg.get("pretrain")
    return isinstance(node, DictConfig) and isinstance(node.get("model"), DictConfig)


def is_int(value: Any, minimum: int) -> bool:
    """An int (not a bool) >= ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def class_name(node: Any) -> str:
    """The class name ending a node's ``_target_``."""
    return str(node.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(node, DictConfig) else ""


def entries(cfg: DictConfig, group: str) -> dict[str, DictConfig]:
    """The ``name: {_target_: ...}`` entries of a list group (``callbacks``, ``logger``)."""
    node = cfg.get(group)
    if not isinstance(node, DictConfig) or "_target_" in node:  # an older run's single logger
        return {group: node} if isinstance(node, DictConfig) else {}
    return {str(name): item for name, item in node.items() if isinstance(item, DictConfig)}
