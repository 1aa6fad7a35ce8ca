"""Where the config tree lives, what its groups offer, the resolvers it uses, and how an old config is brought up to
date (:func:`upgrade_config`). Imports only OmegaConf (Hydra inside ``compose``), ``errors`` and ``naming``, so it is
cheap and sits below validation: validation reads it, never the other way round.

The YAML tree sits in the repository's ``conf/``; a wheel carries a copy inside the package
(``experiments/conf``), so the same lookup serves an editable checkout and an installed package.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.errors import ConfigError
from experiments.naming import override_key, tensorboard_run_name

log = logging.getLogger(__name__)


def conf_dir() -> Path:
    """The ``conf/`` directory: packaged copy first, then the source checkout's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"cannot find the experiments config tree (conf/train.yaml) near {here}")


#: swappable-part groups -> the key that names the chosen option: conf/<group>/<option>.yaml sets it to <option>
CHOICE_KEYS = {"activation": "name", "pooling": "name", "norm": "name", "upsampling": "name", "init": "scheme"}


def group_options(group: str) -> tuple[str, ...]:
    """The options of a config group, sorted: its YAML files, which are the one list of them.

    Validation accepts exactly these, and each layer module's registry builds exactly these
    (``tests/test_options.py``), so a new option is one YAML file plus one registry entry.
    """
    return tuple(sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")))


def option_overrides(group: str, option: str) -> dict[str, str]:
    """Group -> option that ``conf/<group>/<option>.yaml`` picks in another group through its defaults list
    (``model=fcn``: ``{"data": "shapes_seg", "upsampling": "transposed"}``); empty for an option without such lines."""
    path = conf_dir() / group / f"{option}.yaml"
    return dict(_option_overrides(path, path.stat().st_mtime_ns)) if path.is_file() else {}


@functools.lru_cache(maxsize=64)
def _option_overrides(path: Path, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    """:func:`option_overrides`, read once per version of the file."""
    node = OmegaConf.load(path)
    found = []
    for entry in (node.get("defaults") if isinstance(node, DictConfig) else None) or []:
        if OmegaConf.is_dict(entry):
            for key, value in OmegaConf.to_container(entry, resolve=False).items():
                words = str(key).split()
                if len(words) == 2 and words[0] == "override" and value is not None:
                    found.append((words[1].strip("/").split("@")[0], str(value)))
    return tuple(found)


def set_by(choices: Mapping[str, Any], typed: Sequence[str] = ()) -> dict[str, str]:
    """Group -> the choice that picked its option (``{"upsampling": "model=fcn"}``), for every group whose option
    came from another option's defaults list (``override /upsampling: transposed`` in ``conf/model/fcn.yaml``) and
    was not typed on the command line (``typed``: the overrides). Said where a choice is shown or refused, so a
    default that one choice changes in another group is never a silent one. An experiment, applied after the
    model, is credited when both pick the same option."""
    chosen = {str(g): str(o) for g, o in choices.items() if o is not None and "@" not in str(g)}
    typed_groups = {override_key(o).lstrip("~") for o in typed if "." not in override_key(o)}
    found: dict[str, str] = {}
    for group in sorted(chosen, key=lambda g: g == "experiment"):  # the experiment last: it wins in Hydra too
        option = chosen[group]
        if option in ("None", "null") or option.startswith("["):
            continue
        for target, picked in option_overrides(group, option).items():
            if target not in typed_groups and chosen.get(target) == picked:
                found[target] = f"{group}={option}"
    return found


def hydra_error_line(error: Exception) -> str:
    """A Hydra composition error (``activation=sigmod``) as one line: its list of valid options kept, the config
    search path dropped."""
    return " ".join(str(error).split("Config search path")[0].split())


def _length(seq: Sequence, offset: int | str = 0) -> int:
    return len(seq) + int(offset)


def project_root() -> str:
    """``${project_root:}``, the default of ``paths.root_dir``: the source checkout holding ``conf/`` and
    ``pyproject.toml``, so that ``data/`` and ``outputs/`` do not move with the directory a command starts in; for an
    installed package (its ``conf/`` inside site-packages) the current directory, as there is no checkout to use."""
    checkout = conf_dir().parent
    return str(checkout if (checkout / "pyproject.toml").is_file() else Path.cwd())


def tensorboard_run(*, _root_: DictConfig) -> str:
    """``${tensorboard_run:}``: the run's name in TensorBoard, what sets it apart (``experiments.naming``)."""
    return tensorboard_run_name(_root_, conf_dir() / "train.yaml")


def register_resolvers() -> None:
    """``${len:${.kinds}}`` and ``${len:${.kinds},1}`` (one extra class for the background); ``${project_root:}``;
    ``${tensorboard_run:}``."""
    OmegaConf.register_new_resolver("len", _length, replace=True)
    OmegaConf.register_new_resolver("project_root", project_root, replace=True)
    OmegaConf.register_new_resolver("tensorboard_run", tensorboard_run, replace=True)


register_resolvers()


#: keys that moved -> the config group that replaced them (the key's value was an option of that group)
RETIRED_KEYS = {"model.norm": "norm"}


def retired_key_error(key: str, value: Any) -> ConfigError:
    """The one sentence for a retired key that cannot be upgraded by itself: what replaced it, and the override to
    type instead (the old value when it is still an option of the new group)."""
    group = RETIRED_KEYS[key]
    known = group_options(group)
    option = value if all(v in known for v in str(value).split(",")) else "<option>"
    return ConfigError(key, value, f"{key} moved to the {group} config group, one choice for every model",
                       f"use {group}={option}")


@overload
def upgrade_config(source: DictConfig) -> DictConfig: ...
@overload
def upgrade_config(source: Sequence[str]) -> list[str]: ...
def upgrade_config(source: DictConfig | Sequence[str]) -> DictConfig | list[str]:
    """Bring an old config, run dir config or command line up to today's keys: the one place that knows what was
    retired (:data:`RETIRED_KEYS`). Call it once, before validation, on whatever came from outside.

    * **Command-line overrides** (a list of strings, before Hydra composes): a retired key is refused in one
      sentence naming its replacement (``model.norm=none`` -> ``use norm=none``), as Hydra alone would only say the
      key is not in the config. Returned unchanged otherwise.
    * **A config written before the key retired** (an old run dir's ``config.yaml``: the key set, its group absent)
      is upgraded in place: ``model.norm: batch`` becomes the ``norm`` group's ``batch`` option, read from
      ``conf/norm/batch.yaml``, and the change is logged.
    * **A config that holds both** (composed today, with an old experiment file or ``+model.norm=...`` setting the
      retired key next to the group) has two answers to one question: refused with the same sentence.
    """
    if isinstance(source, DictConfig):
        return _upgrade_tree(source)
    if isinstance(source, str):
        raise TypeError("upgrade_config takes a config or a list of overrides, not one string")
    overrides = [str(o) for o in source]
    for override in overrides:
        if "=" in override and override_key(override) in RETIRED_KEYS:
            raise retired_key_error(override_key(override), override.split("=", 1)[1])
    return overrides


def _upgrade_tree(cfg: DictConfig) -> DictConfig:
    for key, group in RETIRED_KEYS.items():
        parent_key, leaf = key.rsplit(".", 1)
        parent = OmegaConf.select(cfg, parent_key, default=None)
        if not isinstance(parent, DictConfig) or leaf not in parent:
            continue
        value = parent.get(leaf)
        if group in cfg or str(value) not in group_options(group):
            raise retired_key_error(key, value)
        with open_dict(parent):
            del parent[leaf]
        with open_dict(cfg):
            cfg[group] = OmegaConf.load(conf_dir() / group / f"{value}.yaml")
            if OmegaConf.select(cfg, "hydra.runtime.choices", default=None) is not None:
                cfg.hydra.runtime.choices[group] = str(value)
        log.info("upgraded an old config: %s=%s is now %s=%s", key, value, group, value)
    return cfg


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose the config as the CLI would, for tests, notebooks and the inspect/evaluate commands.

    ``run_dir`` is left to the caller (the CLI gets it from Hydra's output dir). The result carries a slim
    ``hydra`` node (``runtime.choices``, ``overrides.task``) so runs composed here record their choices too.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    overrides = upgrade_config(list(overrides))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        full = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    # Keep only what a run records from Hydra (group choices, command-line overrides), as plain values:
    # the rest of the hydra node interpolates runtime values that exist only under the CLI.
    record = OmegaConf.create({
        "runtime": {"choices": OmegaConf.to_container(full.hydra.runtime.choices)},
        "overrides": {"task": list(full.hydra.overrides.task)},
    })
    with open_dict(full):
        del full["hydra"]
        full["hydra"] = record
    return full
