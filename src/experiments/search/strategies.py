"""Samplers and pruners by name: ``hydra.sweeper.sampler.name=tpe``, ``hydra.sweeper.pruner.name=hyperband``.

Each is a small config node ``{name: <option>, <keyword>: <value>, ...}`` (conf/hydra/sweeper/sampler/*.yaml and
pruner/*.yaml), built here into Optuna's object. A name or keyword Optuna does not take is a user's mistake, so it
becomes one :class:`~experiments.errors.ConfigError` before any trial starts, not a ``TypeError`` deep in Optuna.

``warmup_epochs`` is the one pruner key that is ours, not Optuna's: a trial is never pruned in its first
``warmup_epochs`` epochs *of every seed* (see :mod:`.objective` for why Optuna's own ``n_warmup_steps`` could only
protect the first seed), whichever pruner is chosen.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from experiments.errors import ConfigError, show

#: sampler name -> class name in ``optuna.samplers``
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
            "qmc": "QMCSampler"}
#: pruner name -> class name in ``optuna.pruners``
PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner", "successive_halving": "SuccessiveHalvingPruner",
           "hyperband": "HyperbandPruner", "threshold": "ThresholdPruner", "none": "NopPruner"}
#: pruner keys this project reads itself (the trial's callback), not passed to Optuna
OWN_PRUNER_KEYS = ("warmup_epochs",)
SAMPLER_KEY, PRUNER_KEY = "hydra.sweeper.sampler", "hydra.sweeper.pruner"


def _named(node: Mapping[str, Any] | None, key: str, table: Mapping[str, str], default: str) -> tuple[str, dict]:
    """``(name, keyword arguments)`` of a sampler/pruner node, the name checked against ``table``."""
    values = dict(node or {})
    name = str(values.pop("name", default))
    if name not in table:
        raise ConfigError(f"{key}.name", name, f"Optuna has no such {key.rsplit('.', 1)[-1]} here",
                          f"choose one of {', '.join(table)}")
    return name, values


def _construct(module: Any, cls_name: str, kwargs: dict[str, Any], key: str, name: str) -> Any:
    """``cls(**kwargs)`` with an unknown keyword named in one sentence, listing the ones the class takes."""
    cls = getattr(module, cls_name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", kwargs[unknown[0]], f"the {name} {key.rsplit('.', 1)[-1]} takes no "
                          f"such setting", f"use one of {', '.join(accepted) or '(none)'} or remove it")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(key, show(kwargs), f"Optuna's {cls_name} refused it ({err})",
                          "correct the setting it names") from err


def sampler_name(node: Mapping[str, Any] | None) -> str:
    return _named(node, SAMPLER_KEY, SAMPLERS, "tpe")[0]


def pruner_settings(node: Mapping[str, Any] | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(name, Optuna's keyword arguments, our own keys)`` of a pruner node, the name checked."""
    name, values = _named(node, PRUNER_KEY, PRUNERS, "median")
    own = {k: values.pop(k) for k in OWN_PRUNER_KEYS if k in values}
    return name, values, own


def build_sampler(node: Mapping[str, Any] | None) -> Any:
    import optuna

    name, kwargs = _named(node, SAMPLER_KEY, SAMPLERS, "tpe")
    return _construct(optuna.samplers, SAMPLERS[name], kwargs, SAMPLER_KEY, name)


def build_pruner(node: Mapping[str, Any] | None) -> Any:
    import optuna

    name, kwargs, _own = pruner_settings(node)
    return _construct(optuna.pruners, PRUNERS[name], kwargs, PRUNER_KEY, name)


def warmup_epochs(node: Mapping[str, Any] | None) -> int:
    """Epochs of every seed a trial always trains before the pruner may stop it (default 1)."""
    value = dict(node or {}).get("warmup_epochs", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{PRUNER_KEY}.warmup_epochs", value, "it must be a whole number of epochs, 0 or more",
                          "set e.g. warmup_epochs=1")
    return value
