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

    def like(self, channels: int, kernel_size: int | tuple[int, int], stride: int | tuple[int, int],
             padding: int | tuple[int, int] = 0, ceil_mode: bool = False) -> nn.Module:
        """This kind of down-sampling with another pooling layer's own geometry.

        How the zoo bridge (``models/zoo.py``) swaps a standard architecture's pooling layers: ResNet's 3x3
        stride-2 stem max-pool becomes a 3x3 stride-2 average pool (or Lp pool, or stride-2 conv), so every
        shape after it stays the architecture's. ``kernel_size`` of the option itself is not used here.
        Average pooling divides by the real pixels only (``count_include_pad=False``), as max pooling ignores its
        padding; Lp pooling, which has no padding argument, pads with zeros, which add nothing to its sum.
        """
        if self.name == "max":
            return nn.MaxPool2d(kernel_size, stride, padding, ceil_mode=ceil_mode)
        if self.name == "avg":
            return nn.AvgPool2d(kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=False)
        if self.name == "lp":
            lp = nn.LPPool2d(self.norm_type, kernel_size, stride, ceil_mode=ceil_mode)
            pads = (padding, padding) if isinstance(padding, int) else tuple(padding)
            return nn.Sequential(nn.ZeroPad2d((pads[1], pads[1], pads[0], pads[0])), lp) if any(pads) else lp
        if self.name == "stride":
            return nn.Conv2d(channels, channels, kernel_size, stride=stride, padding=padding)
        return nn.Identity()


def pooling_factory(name: str = "max", kernel_size: int = 2, norm_type: float = 2.0) -> PoolingFactory:
    """Hydra target of the ``pooling`` group."""
    return PoolingFactory(name, kernel_size, norm_type)
