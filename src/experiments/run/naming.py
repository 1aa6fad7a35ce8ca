"""What a run is called where runs are shown side by side: the overrides that tell it apart from its neighbours.

TensorBoard names a run by the path of its event directory under ``--logdir``; a sweep's job directories are
numbers (``0/``, ``1/`` ...), so without a name of its own every curve is anonymous. A run's name says what differs:

* in a sweep, the job's value of every **swept** key, the keys that vary across the sweep, in sweep order with
  ``seed`` last (``activation=sigmoid,seed=0``). Swept keys come from the sweeper's ``params`` (an experiment's
  grid) and from the sweep command line (``seed=0,1,2``), which Hydra's basic sweeper saves in
  ``<sweep dir>/multirun.yaml`` before launching jobs, so every job, in any launcher's process, sees the same keys;
* in a single run, its command-line overrides: group choices that differ from ``train.yaml``'s defaults first,
  then other keys, ``seed`` last; ``defaults`` when nothing differs.

Names are safe as one path component (letters, digits and ``=,.+-_[]`` kept, anything else ``_``) and bounded in
length (a long name keeps its start and gains a hash of the whole, so two long names stay distinct). Within a sweep
a TensorBoard run is ``<job>/tensorboard/<name>``: unique through the job directory even if two jobs had the
same swept values. Standard library, OmegaConf and Hydra's override parser only (no torch).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

SEED_KEY = "seed"
#: the name of a run that overrides nothing
DEFAULT_NAME = "defaults"
#: longest name kept whole (one path component; file systems allow 255 bytes)
MAX_NAME = 120
#: the file Hydra's basic sweeper writes into the sweep dir, holding the sweep's command-line overrides
MULTIRUN_RECORD = "multirun.yaml"

_UNSAFE = re.compile(r"[^A-Za-z0-9=,.+\-_\[\]]")


def override_key(override: str) -> str:
    """``+model.width=8`` -> ``model.width``."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> str:
    return override.split("=", 1)[1] if "=" in override else ""


def seed_last(keys: Sequence[str]) -> list[str]:
    """``keys`` in their order, without repeats, with ``seed`` moved to the end (a repeat, not a treatment)."""
    unique = list(dict.fromkeys(keys))
    return [k for k in unique if k != SEED_KEY] + [k for k in unique if k == SEED_KEY]


def swept_keys(sweeper_params: Mapping[str, Any] | None, sweep_overrides: Sequence[str] = ()) -> list[str]:
    """Keys a sweep varies: its sweeper params and command-line overrides in sweep syntax (``a,b``, ``range(..)``,
    ``choice(..)``, ``interval(..)``), in the order Hydra's basic sweeper combines them (params first)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [f"{key}={value}" for key, value in (sweeper_params or {}).items()] + list(sweep_overrides)
    candidates = [c for c in candidates if not override_key(c).startswith("hydra")]
    if not candidates:
        return []
    parsed = OverridesParser.create().parse_overrides(candidates)
    return seed_last([o.key_or_group for o in parsed if o.is_sweep_override()])


def hydra_sweep() -> tuple[dict[str, Any], list[str]] | None:
    """``(sweeper params, the sweep's command-line overrides)`` when this process runs a job of a ``-m`` sweep,
    None otherwise (a single run, or no Hydra at all)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    params = hydra.sweeper.get("params") if hydra.get("sweeper") is not None else None
    params = OmegaConf.to_container(params) if params is not None else {}
    record = Path(str(hydra.sweep.dir)) / MULTIRUN_RECORD
    overrides: list[str] = []
    if record.is_file():  # the optuna sweeper writes none: its params hold the whole search space
        saved = OmegaConf.load(record)
        overrides = [str(o) for o in (OmegaConf.select(saved, "hydra.overrides.task", default=None) or [])]
    return dict(params or {}), overrides


def current_swept_keys() -> list[str]:
    """The swept keys of the sweep this process runs a job of; empty for a single run."""
    sweep = hydra_sweep()
    return swept_keys(*sweep) if sweep else []


def default_choices(train_yaml: str | Path) -> dict[str, str | None]:
    """Group -> option of ``train.yaml``'s defaults list (``experiment: null`` included as None)."""
    defaults = OmegaConf.load(train_yaml).get("defaults") or []
    choices: dict[str, str | None] = {}
    for entry in defaults:
        if isinstance(entry, Mapping) or OmegaConf.is_dict(entry):
            for group, option in dict(entry).items():
                choices[str(group)] = None if option is None else str(option)
    return choices


def run_name(overrides: Sequence[str], swept: Sequence[str] = (),
             defaults: Mapping[str, str | None] | None = None) -> str:
    """The name of a run with these command-line ``overrides`` (see the module doc for the rules).

    ``swept``: the sweep's swept keys (empty for a single run); ``defaults``: ``train.yaml``'s group choices.
    """
    by_key = {override_key(o): o.lstrip("+") for o in overrides  # deletions (~key) set nothing apart
              if "=" in o and not o.startswith("~") and not override_key(o).startswith("hydra")}
    if swept and any(key in by_key for key in swept):
        parts = [by_key[key] for key in seed_last(swept) if key in by_key]
    else:
        defaults = defaults or {}
        chosen = [k for k in by_key if k in defaults and str(defaults[k]) != override_value(by_key[k])]
        others = [k for k in by_key if k not in defaults]
        parts = [by_key[k] for k in seed_last([*chosen, *others])]
    return safe_name(",".join(parts)) if parts else DEFAULT_NAME


def safe_name(name: str, limit: int = MAX_NAME) -> str:
    """One safe path component: unsafe characters -> ``_``; beyond ``limit`` characters, the start + a hash."""
    safe = _UNSAFE.sub("_", name.replace("/", "_")).strip(".") or DEFAULT_NAME
    if len(safe) <= limit:
        return safe
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[: limit - 9]}-{digest}"
