"""Pooling factories: ``factory(channels) -> nn.Module`` halving (by default) the spatial size.

``stride`` replaces pooling by a learnable stride-2 convolution (the "all-convolutional" idea of
Springenberg et al. 2015); ``none`` keeps the resolution, so a model without pooling pays for it in
the size of its first fully connected layer — which is part of the lesson of the pooling ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

POOLINGS = ("max", "avg", "lp", "stride", "none")


@dataclass(frozen=True)
class PoolingFactory:
    """Builds the down-sampling step that ends every encoder stage."""

    name: str = "max"
    kernel_size: int = 2
    norm_type: float = 2.0  # only for ``lp``

    def __post_init__(self) -> None:
        if self.name not in POOLINGS:
            raise ValueError(f"unknown pooling {self.name!r}; choose one of {list(POOLINGS)}")
        if self.kernel_size < 1:
            raise ValueError(f"pooling kernel_size must be >= 1, got {self.kernel_size}")

    @property
    def factor(self) -> int:
        """How much one pooling step divides the height and width by."""
        return 1 if self.name == "none" else self.kernel_size

    def __call__(self, channels: int, return_indices: bool = False) -> nn.Module:
        k = self.kernel_size
        if self.name == "max":
            return nn.MaxPool2d(k, k, return_indices=return_indices)
        if return_indices:
            raise ValueError(f"pooling={self.name} records no indices; only max pooling can feed max-unpooling")
        if self.name == "avg":
            return nn.AvgPool2d(k, k)
        if self.name == "lp":
            return nn.LPPool2d(self.norm_type, k, k)
        if self.name == "stride":
            return nn.Conv2d(channels, channels, k, stride=k)
        return nn.Identity()


def pooling_factory(name: str = "max", kernel_size: int = 2, norm_type: float = 2.0) -> PoolingFactory:
    """Hydra target of the ``pooling`` group."""
    return PoolingFactory(name, kernel_size, norm_type)
