"""The VGG/LeNet-style convolutional encoder shared by the classifier (``cnn``) and ``fcn``.

Sharing one encoder is what makes the FCN lesson concrete: the segmenter is the classifier with its
fully connected head replaced by convolutions, not a different network.
"""

from __future__ import annotations

import torch
from torch import nn

from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import BATCH_NORM, NormFactory
from experiments.layers.pooling import PoolingFactory


class ConvBlock(nn.Sequential):
    """conv -> norm -> activation, with the conv widened for activations that reduce channels (Maxout)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        act_layer: ActivationFactory,
        kernel_size: int = 3,
        norm_layer: NormFactory = BATCH_NORM,
        dilation: int = 1,
        stride: int = 1,
    ) -> None:
        wide = out_channels * act_layer.width_multiplier
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels, wide, kernel_size, stride=stride, padding=padding, dilation=dilation,
                bias=norm_layer.conv_bias,
            ),
            norm_layer(wide),
            act_layer(out_channels),
        )


class Stage(nn.Module):
    """``convs_per_stage`` ConvBlocks followed by one pooling step (kept separate for FCN skips/unpooling)."""

    def __init__(self, convs: nn.Sequential, pool: nn.Module) -> None:
        super().__init__()
        self.convs = convs
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.convs(x))


class Encoder(nn.Module):
    """Stages of (conv -> norm -> act) x n -> pool; stage i has ``width * growth**i`` channels."""

    def __init__(
        self,
        in_channels: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory,
        stages: int = 3,
        convs_per_stage: int = 1,
        width: int = 16,
        growth: float = 2.0,
        kernel_size: int = 3,
        norm_layer: NormFactory = BATCH_NORM,
        max_width: int = 512,
        return_indices: bool = False,
    ) -> None:
        super().__init__()
        self.widths = [min(int(round(width * growth**i)), max_width) for i in range(stages)]
        self.pool_factor = pool_layer.factor
        blocks = []
        channels = in_channels
        for out in self.widths:
            convs = nn.Sequential(
                *(
                    ConvBlock(channels if j == 0 else out, out, act_layer, kernel_size, norm_layer)
                    for j in range(convs_per_stage)
                )
            )
            blocks.append(Stage(convs, pool_layer(out, return_indices=return_indices)))
            channels = out
        self.stages = nn.ModuleList(blocks)
        self.out_channels = channels

    def output_size(self, image_size: int) -> int:
        """Spatial size after all stages (pooling floors, as PyTorch's pools do)."""
        size = image_size
        for _ in self.stages:
            size //= self.pool_factor
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x
