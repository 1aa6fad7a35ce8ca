"""Rule of every swappable-part group (activation, pooling, norm, upsampling, init): the chosen option is one of the
group's YAML files, even when it is set by key (``activation.name=...``).
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.config import CHOICE_KEYS, group_options
from experiments.validation.checks import listing, require
from experiments.validation.registry import rule


@rule("choices")
def _check_choices(cfg: DictConfig) -> None:
    """Each swappable part names an option of its group, the YAML files of conf/<group>/ (even when set by key)."""
    for group, key in CHOICE_KEYS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        known = group_options(group)
        value = node.get(key)
        require(value in known, f"{group}.{key}", value, f"the {group} options are {listing(known)}",
                f"pick one with {group}=<option>")
