"""Every key of every group must be one its chosen option takes: refused here in one sentence, not by a ``TypeError``
or Hydra's ``InstantiationException`` inside a job minutes into a sweep.

Hydra already refuses a misspelt key on the command line (``data.trian_size=1`` is not in the config), but not a
key that an experiment file, a scale file or a ``+`` append merges into an option that lacks it
(``experiment=sigmoid_vs_relu data=image_folder`` once set ``data.train_size`` on a module without it).

What an option takes ("its declared keys"), read without importing torch or Lightning:

* the keys of its YAML file ``conf/<group>/<option>.yaml`` (with the files its own defaults list includes; a
  ``# @package _global_`` file declares what it puts under the group's key), and
* the parameters of its ``_target_``'s constructor (or function), read from the target's source file with
  :mod:`ast`: the file is found with :func:`importlib.util.find_spec` of the top-level package, which locates a
  package without running it, and re-exports (``from .sgd import SGD``) are followed. A third-party target that
  takes ``**kwargs`` (a logger passing them on) takes any key; one of this project's takes only what it names
  and what its YAML declares (``ShapesDataModule``'s render options are declared in conf/data/shapes*.yaml).

A target whose source cannot be read is checked against its YAML keys alone only when it is this project's; a
third-party one is then not checked (a false refusal would be worse than Hydra's own error).
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.config import conf_dir
from experiments.errors import ConfigError
from experiments.validation.registry import rule

#: groups whose node is a set of named callbacks/loggers, each with its own ``_target_``
CONTAINER_GROUPS = ("callbacks", "logger", "diagnostics")
#: groups that put values elsewhere (global packages) or are Hydra's own: nothing of theirs to check by key
SKIPPED_GROUPS = ("experiment", "scale", "debug", "hydra")
#: this project's packages: their targets' parameters are the whole list, even with ``**kwargs``
OWN_PACKAGES = ("experiments",)
#: how many re-exports are followed to find a class
MAX_HOPS = 8
#: parameters the framework passes itself (build.py: layer factories, the optimiser's parameters, a schedule's
#: optimiser and step count): never a config key
SUPPLIED = frozenset({"act_layer", "pool_layer", "norm_layer", "upsample_layer", "params", "optimizer", "total_steps",
                      "encoder"})  # encoder: the EncoderSpec build.py makes from the model's flat keys


# -- declared keys: the option's YAML ------------------------------------------------------------------------------


def _is_global(path: Path) -> bool:
    with path.open() as handle:
        return any(line.strip() == "# @package _global_" for line, _ in zip(handle, range(5), strict=False))


@cache
def yaml_keys(group: str, option: str) -> dict[str, frozenset[str]]:
    """``{"": keys of the option, <child>: keys of a named child}`` from ``conf/<group>/<option>.yaml`` and the
    options of the same group its defaults list includes (``trainer/gpu`` includes ``trainer/default``)."""
    path = conf_dir() / group / f"{option}.yaml"
    if not path.is_file():
        return {}
    loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    node: Any = loaded.get(group, {}) if _is_global(path) else loaded
    keys: dict[str, set[str]] = {"": set()}
    for entry in loaded.get("defaults", []) or []:
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            for child, names in yaml_keys(group, entry).items():
                keys.setdefault(child, set()).update(names)
    if isinstance(node, dict):
        keys[""].update(k for k in node if k != "defaults")
        for child, value in node.items():
            if isinstance(value, dict):
                keys.setdefault(child, set()).update(value)
    return {child: frozenset(names) for child, names in keys.items()}


def _group_child_keys(group: str) -> dict[str, frozenset[str]]:
    """For a container group (callbacks ...): each named child's keys over all the group's option files."""
    merged: dict[str, set[str]] = {}
    for path in sorted((conf_dir() / group).glob("*.yaml")):
        for child, names in yaml_keys(group, path.stem).items():
            if child:
                merged.setdefault(child, set()).update(names)
    return {child: frozenset(names) for child, names in merged.items()}


# -- declared keys: the target's parameters, read from its source ----------------------------------------------


def _module_file(module: str) -> Path | None:
    """The source file of ``module`` (a dotted name), found without executing it."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name is located, not imported
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not spec.submodule_search_locations:
        return Path(spec.origin) if not rest and spec.origin else None
    for base in spec.submodule_search_locations:
        path = Path(base).joinpath(*rest)
        for candidate in (path / "__init__.py", path.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


@lru_cache(maxsize=256)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _arguments(args: ast.arguments, skip_first: bool) -> tuple[frozenset[str], bool]:
    positional = [a.arg for a in args.posonlyargs + args.args]
    names = positional[1:] if skip_first else positional
    return frozenset(names + [a.arg for a in args.kwonlyargs]), args.kwarg is not None


def _resolve(module: str, level: int, name: str | None, here: str, is_package: bool) -> str:
    """The absolute module of ``from <.module> import ...`` written in module ``here``."""
    if not level:
        return name or ""
    parts = here.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _find(module: str, name: str, hops: int = 0) -> tuple[frozenset[str], bool] | None:
    """Parameters of ``module.name`` (a class's ``__init__`` without ``self``, or a function's) and whether it takes
    ``**kwargs``; None when the source cannot tell."""
    path = _module_file(module)
    if path is None or hops > MAX_HOPS:
        return None
    tree = _parse(path)
    is_package = path.name == "__init__.py"
    for node in _top_level(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return _arguments(node.args, skip_first=False)
        if isinstance(node, ast.ClassDef) and node.name == name:
            return _class(node, module, tree, is_package, hops)
    for node in _top_level(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _resolve(module, node.level, node.module, module, is_package)
                    found = _find(source, alias.name, hops + 1)
                    if found is None:  # ``from pkg import submodule``-style ambiguity: try pkg.name as a module
                        continue
                    return found
    return None


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Module-level statements, including those inside ``try`` / ``if`` blocks (optional imports)."""
    out: list[ast.stmt] = []
    for node in tree.body:
        out.append(node)
        if isinstance(node, (ast.Try, ast.If)):
            out += [n for block in (node.body, getattr(node, "orelse", [])) for n in block]
    return out


def _class(node: ast.ClassDef, module: str, tree: ast.Module, is_package: bool,
           hops: int) -> tuple[frozenset[str], bool] | None:
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return _arguments(item.args, skip_first=True)
    if any("dataclass" in ast.unparse(d) for d in node.decorator_list):
        return frozenset(i.target.id for i in node.body
                         if isinstance(i, ast.AnnAssign) and isinstance(i.target, ast.Name)), False
    for base in node.bases:  # no __init__ of its own: the first base's that can be read
        name = ast.unparse(base).rsplit(".", 1)[-1]
        if name in ("object", "Generic", "Protocol"):
            continue
        found = _find(module, name, hops + 1)
        if found is not None:
            return found
    return None


@cache
def target_parameters(target: str) -> tuple[frozenset[str], bool] | None:
    """``(parameters, takes **kwargs)`` of a ``_target_`` such as ``torch.optim.SGD``, read without importing it."""
    module, _, name = target.rpartition(".")
    if not module:
        return None
    try:
        return _find(module, name)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


# -- the check -------------------------------------------------------------------------------------------------


def _accepted(node: DictConfig, declared: frozenset[str]) -> frozenset[str] | None:
    """Every key ``node`` may hold, or None when anything goes (a third-party target taking ``**kwargs``, or one
    whose source cannot be read)."""
    target = node.get("_target_") if "_target_" in node else None
    if not isinstance(target, str):
        return declared
    found = target_parameters(target)
    own = target.split(".", 1)[0] in OWN_PACKAGES
    if found is None:
        return declared if own else None
    params, open_ended = found
    if open_ended and not own:
        return None
    return declared | (params - SUPPLIED)


def _source(cfg: DictConfig, key: str) -> str:
    """Where a refused key came from, for the sentence: the command line, the experiment file or the scale."""
    overrides = OmegaConf.select(cfg, "hydra.overrides.task", default=None) or []
    if any(str(o).lstrip("+~").split("=", 1)[0] == key for o in overrides):
        return "given on the command line"
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    for group in ("experiment", "scale"):
        option = choices.get(group)
        path = conf_dir() / group / f"{option}.yaml"
        if option and path.is_file() and OmegaConf.select(OmegaConf.load(path), key, default=None) is not None:
            return f"set by {group}={option}"
    return "set by a config file"


def _refuse(cfg: DictConfig, key: str, value: Any, option: str, declared: frozenset[str],
            accepted: frozenset[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    visible = [k for k in accepted if not k.startswith("_")]
    shown = sorted(k for k in visible if k in declared) + sorted(k for k in visible if k not in declared)
    listing = ", ".join(shown[:16]) + (", ..." if len(shown) > 16 else "")
    return ConfigError(key, value, f"{option} takes no key {leaf} ({_source(cfg, key)}); it takes {listing}",
                       f"remove {key}, or choose an option that takes it")


def _check_node(cfg: DictConfig, path: str, node: DictConfig, option: str, declared: frozenset[str]) -> None:
    accepted = _accepted(node, declared)
    if accepted is None:
        return
    from experiments.config import RETIRED_KEYS  # the retired keys get their own sentence (validation/norm.py)

    for key in node:
        full = f"{path}.{key}"
        if str(key).startswith("_") or key in accepted or full in RETIRED_KEYS:
            continue
        raise _refuse(cfg, full, node._get_node(key)._value(), option, declared, accepted)


def _choices(cfg: DictConfig) -> dict[str, Any]:
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return dict(choices)


def _named_option(group: str, node: DictConfig, option: Any) -> Any:
    """The option a swappable part's node says it is (``activation.name``, ``init.scheme``), which wins over Hydra's
    record of the choice: a node replaced after composition (a notebook, the receptive-field sweep) names itself."""
    from experiments.config import CHOICE_KEYS, group_options

    named = node.get(CHOICE_KEYS[group]) if group in CHOICE_KEYS else None
    return named if isinstance(named, str) and named in group_options(group) else option


@rule("keys")
def check_keys(cfg: DictConfig) -> None:
    """Refuse the first key that the chosen option of its group does not take, for every config group."""
    for group, option in _choices(cfg).items():
        if "/" in group or group in SKIPPED_GROUPS or option is None:
            continue
        node = cfg.get(group) if group in cfg else None
        if not isinstance(node, DictConfig):
            continue
        if group in CONTAINER_GROUPS:
            children = _group_child_keys(group)
            for name in node:
                child = node.get(name)
                if isinstance(child, DictConfig) and "_target_" in child:
                    _check_node(cfg, f"{group}.{name}", child, f"the {group} entry {name}",
                                children.get(str(name), frozenset()))
            continue
        if isinstance(option, (list, ListConfig)):
            continue
        option = _named_option(group, node, option)
        declared = yaml_keys(group, str(option)).get("")
        if declared is None:  # an option from outside conf/ (a structured config): nothing to compare with
            continue
        _check_node(cfg, group, node, f"{group}={option}", declared)
