"""What a run was configured with, printed when it starts (``print_config``): a few lines, or the whole tree.

Why: a run's numbers mean something only with the config that produced them, and a Hydra composition (defaults,
an experiment, overrides) is not obvious from the command line. But the whole composed config is some 160 lines,
which on a first ``make train`` bury everything else, so the default (``print_config=compact``) is what was
*chosen*: the headline groups (model, data, optimizer, schedule), every other group whose option differs from
``conf/train.yaml``'s defaults (an experiment's choices show up here), the other command-line overrides, and the run
dir, about a dozen lines. The full config is in ``<run dir>/config.yaml`` and ``.hydra/`` anyway.

``print_config=full`` (or ``true``) prints the tree: one branch per config group, labelled with the option chosen,
so a reader finds ``optimizer`` without scrolling through ``model``; ``print_config=[model,optimizer]`` expands only
those (the others collapse to one line: their option, or the names in a list group such as ``callbacks``);
``print_config=false`` prints nothing. ``train`` prints on rank zero only, and not in the jobs of a ``-m`` sweep,
where every job's config is in its ``.hydra/config.yaml`` and N copies would bury the sweep's own output;
``--cfg job`` prints the composed config without running.

Imports Rich and OmegaConf only (Rich comes with Lightning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: keys that are not part of what the run is (Hydra's own record)
HIDDEN = ("hydra",)
#: ``print_config`` values (besides a list of groups to expand)
COMPACT, FULL = "compact", "full"
#: groups the compact view always shows, default or not: what a run is, at a glance
HEADLINE = ("model", "data", "optimizer", "scheduler")
#: the branch holding the top-level scalars (seed, tags, run_dir, ...)
RUN_BRANCH = "run"


def _choices(cfg: DictConfig) -> dict[str, str]:
    """Each group's chosen option: the composed record (``compose``) or Hydra's runtime (the CLI)."""
    node = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if node is None:
        from hydra.core.hydra_config import HydraConfig

        node = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return {str(k): str(v) for k, v in dict(node).items() if v is not None and "/" not in str(k)}


def _yaml(node: Any) -> str:
    """The node as YAML, interpolations resolved where they can be (an unresolvable one is shown as written)."""
    try:
        return OmegaConf.to_yaml(node, resolve=True).rstrip()
    except Exception:  # e.g. ${hydra:...} outside the CLI: show the expression rather than fail the run
        return OmegaConf.to_yaml(node).rstrip()


def _summary(name: str, node: Any, choices: dict[str, str]) -> str:
    """One line for a collapsed group: its option, or the entries of a list group (callbacks, logger)."""
    if name in choices:
        return choices[name]
    if isinstance(node, DictConfig):
        return ", ".join(str(k) for k in node) or "(empty)"
    return str(node)


def config_tree(cfg: DictConfig, expand: bool | Sequence[str] = True) -> Any:
    """The ``rich.tree.Tree`` of ``cfg``: a branch per group (in composition order), then the run's own keys."""
    from rich.syntax import Syntax
    from rich.tree import Tree

    choices = _choices(cfg)
    expanded = set(expand) if not isinstance(expand, bool) else None
    tree = Tree("[bold]config[/]", guide_style="dim")
    scalars: dict[str, Any] = {}
    for name in cfg:
        if name in HIDDEN:
            continue
        node = cfg._get_node(name)
        if not isinstance(node, DictConfig):
            scalars[str(name)] = node
            continue
        label = f"[bold]{name}[/]: {_summary(str(name), node, choices)}"
        if expand is True or (expanded is not None and name in expanded):
            tree.add(label).add(Syntax(_yaml(node), "yaml", theme="ansi_dark", background_color="default"))
        else:
            tree.add(label)
    if scalars:
        run = OmegaConf.create({k: cfg._get_node(k) for k in scalars})
        tree.add(f"[bold]{RUN_BRANCH}[/]").add(Syntax(_yaml(run), "yaml", theme="ansi_dark",
                                                       background_color="default"))
    return tree


def print_config_tree(cfg: DictConfig, console: Any = None) -> None:
    """Print the tree as ``print_config`` asks: a list: those groups expanded; false: nothing; otherwise (true,
    full, or compact when the tree is asked for by name) every group expanded."""
    setting = cfg.get("print_config", True)
    if not setting:
        return
    from rich.console import Console

    expand = True if isinstance(setting, (bool, str)) else [str(group) for group in setting]
    (console or Console()).print(config_tree(cfg, expand))


def _same(option: Any, default: Any) -> bool:
    """Whether two options of a group are the same; a list group's (``[tensorboard, csv]``) in any spelling."""
    def norm(value: Any) -> str:
        return "".join(ch for ch in str(value) if ch not in "[]'\" ")

    return norm(option) == norm(default)


def compact_lines(cfg: DictConfig, choices: Mapping[str, str] | None = None,
                  overrides: Sequence[str] | None = None) -> list[str]:
    """The compact view: headline groups, groups that differ from the defaults (with the default), the other
    overrides, where the run starts from, and the run dir. ``choices``/``overrides`` default to Hydra's record
    (a resumed run passes its own, from its record)."""
    from experiments.config import conf_dir, set_by
    from experiments.naming import default_choices, override_key, recordable, task_overrides

    chosen = dict(choices) if choices is not None else _choices(cfg)
    typed = list(overrides) if overrides is not None else task_overrides(cfg)
    defaults = {group: None if option is None else option.replace("'", "")  # a list group's: [tensorboard, csv]
                for group, option in default_choices(conf_dir() / "train.yaml").items()}
    picked = set_by(chosen, typed)  # upsampling=transposed because model=fcn picks it: said, not silent

    def shown(group: str, option: Any) -> str:
        notes = [f"set by {picked[group]}"] if group in picked else []
        default = defaults.get(group)
        if default is not None and not _same(option, default):
            notes.append(f"default {default}")
        return f"{option}  ({', '.join(notes)})" if notes else str(option)

    rows: list[tuple[str, str]] = []
    for group in HEADLINE:
        if chosen.get(group) is not None:
            rows.append((group, shown(group, chosen[group])))
    for group, option in chosen.items():
        if group in HEADLINE or "@" in group or option is None or str(option) in ("None", "null"):
            continue  # (budget@_global_: a package's values that follow from the choices, not one of them)
        if not _same(option, defaults.get(group)) or group in picked:
            rows.append((group, shown(group, option)))
    others = [o for o in recordable(typed) if override_key(o).lstrip("~") not in chosen]  # not shown above
    if others:
        rows.append(("overrides", "  ".join(others)))
    if cfg.get("ckpt_path"):
        rows.append(("starts from", str(cfg.ckpt_path)))
    if cfg.get("resume"):
        rows.append(("resumes", "its last checkpoint, with the run's own config"))
    rows.append(("run dir", _run_dir(cfg)))
    width = max(len(label) for label, _ in rows)
    return [f"config ({COMPACT}; print_config={FULL} shows every key)"] + \
        [f"  {label:<{width}}  {value}" for label, value in rows]


def _run_dir(cfg: DictConfig) -> str:
    try:
        return str(cfg.get("run_dir"))
    except Exception:  # ${hydra:...} outside the CLI
        return str(cfg._get_node("run_dir")._value()) if "run_dir" in cfg else "?"


def print_run_config(cfg: DictConfig, choices: Mapping[str, str] | None = None,
                     overrides: Sequence[str] | None = None, console: Any = None) -> None:
    """What ``train`` prints when a run starts, as ``print_config`` asks: ``compact`` (the default) the few lines of
    :func:`compact_lines`, ``full``/``true`` or a list of groups the tree, ``false`` nothing."""
    setting = cfg.get("print_config", COMPACT)
    if not setting:
        return
    if setting != COMPACT:
        print_config_tree(cfg, console)
        return
    from rich.console import Console

    # soft_wrap: a long overrides line stays one line (a terminal wraps it), not cut at the console's width
    (console or Console()).print("\n".join(compact_lines(cfg, choices, overrides)), markup=False, highlight=False,
                                 soft_wrap=True)
