"""Rules of the ``activation`` group: maxout's pieces and a leaky slope's sign.
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.validation.checks import require
from experiments.validation.registry import rule


@rule("activation")
def _check_activation(cfg: DictConfig) -> None:
    act = cfg.activation
    if act.get("name") == "maxout":
        pieces = act.get("pieces")
        require(isinstance(pieces, int) and pieces >= 2, "activation.pieces", pieces,
                "maxout takes the max over groups of pieces, so it needs at least 2",
                "use activation.pieces=2 or more")
    if "negative_slope" in act:
        slope = act.negative_slope
        require(isinstance(slope, (int, float)) and slope >= 0, "activation.negative_slope", slope,
                "a negative slope below 0 flips the sign of negative inputs",
                "use a small positive value such as activation.negative_slope=0.01")
