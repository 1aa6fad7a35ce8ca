"""Normalisation factories: ``factory(channels) -> nn.Module`` for the conv feature maps of every model.

Models take a factory as ``norm_layer`` (as timm and torchvision do) and never name a normalisation, so the
plain-vs-normalised ablation is ``norm=none`` against ``norm=batch`` (or ``group``, ``layer``, ``instance``).

Only 2-D norms are built, for conv feature maps. The fully connected head of ``cnn`` stays un-normalised,
as in LeNet/VGG: the ablation varies the conv layers alone, and group, layer and instance norm have no one
1-D counterpart. Every affine norm here has 2 x C parameters, the same as batch norm, so a norm ablation
compares equal parameter counts; ``conv_bias`` tells the model whether the preceding conv needs its own bias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


def largest_divisor(channels: int, at_most: int) -> int:
    """The largest divisor of ``channels`` not above ``at_most``: how many groups ``group`` norm uses."""
    return max(d for d in range(1, min(channels, at_most) + 1) if channels % d == 0)


# name -> how to build it for C channels (``groups`` is read by ``group`` only). Adding a normalisation is
# one entry here plus one YAML file in conf/norm/.
NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "batch": lambda c, groups: nn.BatchNorm2d(c),
    "group": lambda c, groups: nn.GroupNorm(largest_divisor(c, groups), c),
    # one group: statistics over C, H and W together (the usual LayerNorm of conv nets), per-channel affine
    "layer": lambda c, groups: nn.GroupNorm(1, c),
    "instance": lambda c, groups: nn.InstanceNorm2d(c, affine=True),
    "none": lambda c, groups: nn.Identity(),
}


@dataclass(frozen=True)
class NormFactory:
    """Builds fresh normalisation layers of one kind; see the module docstring."""

    name: str = "batch"
    groups: int = 8  # only for ``group``: an upper bound, clamped to a divisor of each layer's channels

    def __post_init__(self) -> None:
        if self.name not in NORMS:
            raise ValueError(f"unknown norm {self.name!r}; choose one of {list(NORMS)}")
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1:
            raise ValueError(f"norm groups must be an integer >= 1, got {self.groups!r}")

    @property
    def conv_bias(self) -> bool:
        """Whether the conv before this norm needs a bias: only without a norm (a norm's shift replaces it)."""
        return self.name == "none"

    def __call__(self, channels: int) -> nn.Module:
        return NORMS[self.name](channels, self.groups)


#: the models' default ``norm_layer``
BATCH_NORM = NormFactory("batch")


def norm_factory(name: str = "batch", groups: int = 8) -> NormFactory:
    """Hydra target of the ``norm`` group."""
    return NormFactory(name, groups)
