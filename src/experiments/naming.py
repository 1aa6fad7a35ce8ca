"""Torch-free names of runs and of their keys: what a run is called, which of its overrides define it, which group
choices and tags it records. Config, validation and the run record all read this module, and it reads none of them
(standard library, OmegaConf and Hydra's own record only), so naming can never pull them into a circle.

**Overrides.** ``override_key`` / ``override_value`` split ``+model.width=8``; ``recordable`` drops the launch keys
(``resume=``, ``ckpt_path=``, ``tags=``, ``print_config=``), which say how a run was started, not what it is;
``task_overrides`` and ``group_choices`` read a run's overrides and group choices from Hydra's record (the composed
``hydra`` node, or the live ``HydraConfig`` under the CLI).

**Run names.** What a run is called where runs are shown side by side: the overrides that tell it apart from its
neighbours. TensorBoard names a run by the path of its event directory under ``--logdir``; a sweep's job directories
are numbers (``0/``, ``1/`` ...), so without a name of its own every curve is anonymous. A run's name says what
differs:

* in a sweep, the job's value of every **swept** key, the keys that vary across the sweep, in sweep order with
  ``seed`` last (``activation=sigmoid,seed=0``). Swept keys come from the sweeper's ``params`` (an experiment's
  grid) and from the sweep command line (``seed=0,1,2``), which Hydra's basic sweeper saves in
  ``<sweep dir>/multirun.yaml`` before launching jobs, so every job, in any launcher's process, sees the same keys;
* in a single run, its command-line overrides: group choices that differ from ``train.yaml``'s defaults first,
  then other keys, ``seed`` last; ``defaults`` when nothing differs.

Names are safe as one path component (letters, digits and ``=,.+-_[]`` kept, anything else ``_``) and bounded in
length (a long name keeps its start and gains a hash of the whole, so two long names stay distinct). Within a sweep
a TensorBoard run is ``<job>/tensorboard/<name>``: unique through the job directory even if two jobs had the
same swept values.
"""


from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SEED_KEY = "seed"
#: the name of a run that overrides nothing
DEFAULT_NAME = "defaults"
#: longest name kept whole (one path component; file systems allow 255 bytes)
MAX_NAME = 120
#: the file Hydra's basic sweeper writes into the sweep dir, holding the sweep's command-line overrides
MULTIRUN_RECORD = "multirun.yaml"

#: groups whose choice is recorded with every run (HParams columns, report grouping)
RECORDED_GROUPS = (
    "model", "activation", "pooling", "norm", "upsampling", "init", "loss", "optimizer", "scheduler", "data", "augment",
    "trainer", "diagnostics", "experiment", "debug", "pretrain",
)
#: override keys that say how a run was launched, not what it is (the report groups by the others)
#: (tags label a run, print_config only changes the console)
LAUNCH_KEYS = ("resume", "ckpt_path", "tags", "print_config")

_UNSAFE = re.compile(r"[^A-Za-z0-9=,.+\-_\[\]]")


def override_key(override: str) -> str:
    """``+model.width=8`` -> ``model.width``."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> str:
    """``+model.width=8`` -> ``8`` (empty for a deletion such as ``~callbacks``)."""
    return override.split("=", 1)[1] if "=" in override else ""


def recordable(overrides: Sequence[str]) -> list[str]:
    """The overrides that define the run: without the launch keys (:data:`LAUNCH_KEYS`), which only say how it was
    started."""
    return [o for o in overrides if override_key(o) not in LAUNCH_KEYS]


def task_overrides(cfg: DictConfig) -> list[str]:
    """The command-line overrides that define the run (without ``resume=``/``ckpt_path=``...): the composed record
    (``config.compose``), else Hydra's live one (the CLI), else none."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("hydra") is not None:
        overrides = list(cfg.hydra.overrides.task)
    elif HydraConfig.initialized():
        overrides = list(HydraConfig.get().overrides.task)
    else:
        overrides = []
    return recordable(overrides)


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """Which option of each recorded config group this run uses (from Hydra's runtime record)."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("hydra") is not None:
        choices = cfg.hydra.runtime.choices
    elif HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    else:
        choices = {}
    return {g: str(choices[g]) for g in RECORDED_GROUPS if choices.get(g) is not None}


def run_tags(cfg: DictConfig) -> list[str]:
    """The run's ``tags=[...]`` as strings (validation has checked they are a list)."""
    tags = cfg.get("tags") or []
    return [str(tag) for tag in ([tags] if isinstance(tags, str) else tags)]


def debug_mode(cfg: DictConfig, choices: Mapping[str, str]) -> str | None:
    """What makes this a debug run, or None: the ``debug`` group's option, else a debug switch of Lightning's set
    by hand (``trainer.fast_dev_run``, ``trainer.overfit_batches``). The report leaves debug runs out."""
    if choices.get("debug"):
        return choices["debug"]
    for switch in ("fast_dev_run", "overfit_batches"):
        if OmegaConf.select(cfg, f"trainer.{switch}", default=None):
            return f"trainer.{switch}"
    return None


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
    return flat_params(params or {}), overrides


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Sweeper params with nested keys dotted: ``+hydra.sweeper.params.optimizer.lr=...`` arrives as
    ``{"optimizer": {"lr": ...}}``, which is the key ``optimizer.lr`` as a YAML file spells it flat."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def current_swept_keys() -> list[str]:
    """The swept keys of the sweep this process runs a job of; empty for a single run."""
    sweep = hydra_sweep()
    return swept_keys(*sweep) if sweep else []


def default_choices(train_yaml: str | Path) -> dict[str, str | None]:
    """Group -> option of ``train.yaml``'s defaults list (``experiment: null`` included as None)."""
    path = Path(train_yaml)
    return dict(_default_choices(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _default_choices(train_yaml: Path, mtime_ns: int) -> dict[str, str | None]:
    """:func:`default_choices`, read once per version of the file (every run asks twice: its name and its record)."""
    defaults = OmegaConf.load(train_yaml).get("defaults") or []
    choices: dict[str, str | None] = {}
    for entry in defaults:
        if isinstance(entry, Mapping) or OmegaConf.is_dict(entry):
            plain = OmegaConf.to_container(entry, resolve=False) if OmegaConf.is_dict(entry) else dict(entry)
            for group, option in plain.items():  # unresolved: an entry may interpolate (optional budget@_global_)
                if " " not in str(group) and "@" not in str(group):  # "optional x@pkg": not a group users choose
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


def tensorboard_run_name(cfg: DictConfig, train_yaml: str | Path) -> str:
    """The run's name in TensorBoard (``${tensorboard_run:}``): its swept overrides in a sweep, else what it
    overrides next to ``train_yaml``'s defaults. The caller names ``train.yaml`` (``config.conf_dir``), so that this
    module needs nothing above it."""
    return run_name(task_overrides(cfg), current_swept_keys(), default_choices(train_yaml))
