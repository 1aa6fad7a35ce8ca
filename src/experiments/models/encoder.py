"""The VGG/LeNet-style convolutional encoder shared by ``cnn``, ``fcn``, ``dilated`` and ``autoencoder``.

Sharing one encoder is what makes the FCN lesson concrete: the segmenter is the classifier with its
fully connected head replaced by convolutions, not a different network.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import BATCH_NORM, NormFactory
from experiments.layers.pooling import PoolingFactory
from experiments.specs import EncoderSpec


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


class Stages(NamedTuple):
    """Every pooling step of an encoder, shallowest first: what a decoder, skip or probe needs of it."""

    outputs: list[torch.Tensor]  # each stage's pooled output (the skips; ``outputs[-1]`` is the encoder's output)
    indices: list[torch.Tensor | None]  # where each max-pool found its maxima (for unpooling), else None
    sizes: list[torch.Size]  # each pool's input size (what undoing that pool must restore)


class Encoder(nn.Module):
    """Stages of (conv -> norm -> act) x n -> pool, shaped by an :class:`~experiments.specs.EncoderSpec`: stage i
    has ``spec.stage_width(i)`` channels. ``return_indices`` builds max-pools that record their argmax (unpooling)."""

    def __init__(
        self,
        in_channels: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory,
        spec: EncoderSpec,
        norm_layer: NormFactory = BATCH_NORM,
        return_indices: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.widths = spec.widths
        self.pool_factor = pool_layer.factor
        self.return_indices = return_indices
        blocks = []
        channels = in_channels
        for out in self.widths:
            convs = nn.Sequential(
                *(
                    ConvBlock(channels if j == 0 else out, out, act_layer, spec.kernel_size, norm_layer)
                    for j in range(spec.convs_per_stage)
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

    def forward_stages(self, x: torch.Tensor, with_indices: bool = False) -> Stages:
        """Run the stages one by one and keep what ``forward`` throws away: every pool's output and input size, and
        with ``with_indices`` its argmax indices (the encoder must be built with ``return_indices``).

        The one stage walker: segmenters' skips and decoders, the autoencoder's unpooling and the linear probe
        all read stage outputs through it. Indexing a pool's (output, indices) pair instead of unpacking it keeps
        every model ``torch.fx``-traceable for the receptive-field diagnostics."""
        if with_indices and not self.return_indices:
            raise ValueError("this encoder's pools record no indices; build it with return_indices=True")
        outputs, indices, sizes = [], [], []
        for stage in self.stages:
            x = stage.convs(x)
            sizes.append(x.shape[-2:])
            pooled = stage.pool(x)
            x = pooled[0] if self.return_indices else pooled
            indices.append(pooled[1] if with_indices else None)
            outputs.append(x)
        return Stages(outputs, indices, sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x).outputs[-1]
