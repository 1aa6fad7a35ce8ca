"""The composed config as a Rich tree, printed when a run starts (``print_config``).

Why: a run's numbers mean something only with the config that produced them, and a Hydra composition (defaults,
an experiment, overrides) is not obvious from the command line. One branch per config group, labelled with the
option chosen, so a reader finds ``optimizer`` without scrolling through ``model``. ``print_config=true`` expands
every group, ``print_config=[model,optimizer]`` only those (the others collapse to one line: their option, or the
names in a list group such as ``callbacks``), ``print_config=false`` prints nothing. ``train`` prints it on rank
zero only, and not in the jobs of a ``-m`` sweep, where every job's config is in its ``.hydra/config.yaml`` and N trees
would bury the sweep's own output; ``--cfg job`` prints the composed config without running.

Imports Rich and OmegaConf only (Rich comes with Lightning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: keys that are not part of what the run is (Hydra's own record)
HIDDEN = ("hydra",)
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
    """Print the tree as ``print_config`` asks (true: all groups expanded; a list: those groups; false: nothing)."""
    setting = cfg.get("print_config", True)
    if not setting:
        return
    from rich.console import Console

    expand = True if setting is True else [str(group) for group in setting]
    (console or Console()).print(config_tree(cfg, expand))
