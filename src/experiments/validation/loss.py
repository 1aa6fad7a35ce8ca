"""Rules of the ``loss`` group: label smoothing in [0, 1) and a non-negative focal exponent.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from experiments.validation.checks import require
from experiments.validation.registry import rule


@rule("loss")
def _check_loss(cfg: DictConfig) -> None:
    """Label smoothing moves mass from the true class, so 1 would leave none; a negative focal exponent would
    weigh easy examples up."""
    smoothing = OmegaConf.select(cfg, "loss.label_smoothing", default=0.0)
    require(isinstance(smoothing, (int, float)) and 0 <= smoothing < 1, "loss.label_smoothing", smoothing,
            "label smoothing must lie in [0, 1)", "use e.g. loss.label_smoothing=0.1")
    gamma = OmegaConf.select(cfg, "loss.gamma", default=0.0)
    require(isinstance(gamma, (int, float)) and gamma >= 0, "loss.gamma", gamma,
            "the focal exponent cannot be negative", "use e.g. loss.gamma=2")
