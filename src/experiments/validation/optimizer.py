"""Rules of the ``optimizer`` group: a positive learning rate, non-negative weight decay, momentum in [0, 1).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from experiments.validation.checks import require
from experiments.validation.registry import rule


@rule("optimizer")
def _check_optimizer(cfg: DictConfig) -> None:
    """The numbers of any optimiser option; Nesterov momentum needs a momentum to look ahead with."""
    lr = OmegaConf.select(cfg, "optimizer.lr")
    require(isinstance(lr, (int, float)) and lr > 0, "optimizer.lr", lr,
            "the learning rate must be a positive number", "use e.g. optimizer.lr=0.01")
    wd = OmegaConf.select(cfg, "optimizer.weight_decay", default=0.0)
    require(isinstance(wd, (int, float)) and wd >= 0, "optimizer.weight_decay", wd,
            "weight decay cannot be negative", "use optimizer.weight_decay=0 or a small positive value")
    momentum = OmegaConf.select(cfg, "optimizer.momentum", default=0.0)
    require(isinstance(momentum, (int, float)) and 0 <= momentum < 1, "optimizer.momentum", momentum,
            "momentum must lie in [0, 1)", "use e.g. optimizer.momentum=0.9")
    if OmegaConf.select(cfg, "optimizer.nesterov", default=False):
        require(momentum > 0, "optimizer.momentum", momentum, "Nesterov momentum needs a positive momentum",
                "use optimizer.momentum=0.9 or optimizer=sgd")
