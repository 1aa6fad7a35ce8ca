"""Rules of the ``diagnostics`` group: whole-step intervals and a positive divergence threshold.
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.validation.checks import positive_int, require
from experiments.validation.registry import rule

#: diagnostics knobs (conf/diagnostics) -> smallest allowed integer
_DIAGNOSTIC_INTS = {"interval": 1, "every_n_steps": 1, "figure_every_n_epochs": 0, "max_histogram_values": 1}


@rule("diagnostics")
def _check_diagnostics(cfg: DictConfig) -> None:
    """Intervals are whole steps >= 1 (0 would divide by zero); the divergence threshold must be positive."""
    for name, node in (cfg.get("diagnostics") or {}).items():
        if not isinstance(node, DictConfig):
            continue
        for knob, minimum in _DIAGNOSTIC_INTS.items():
            if knob in node:
                positive_int(cfg, f"diagnostics.{name}.{knob}", minimum)
        if node.get("max_grad_norm") is not None:
            limit = node.max_grad_norm
            require(isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0,
                    f"diagnostics.{name}.max_grad_norm", limit, "the exploding-gradient threshold must be positive",
                    f"use e.g. diagnostics.{name}.max_grad_norm=1e4, or null to stop on non-finite values only")
