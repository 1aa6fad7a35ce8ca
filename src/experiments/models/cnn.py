"""``cnn``: a plain VGG/LeNet-style classifier — conv stages, then fully connected layers.

Everything the classic ablations vary is a constructor argument or a layer factory, so "a deep plain
net" is one command line (``model.stages=4 model.convs_per_stage=3 norm=none``). The fully connected head
has no normalisation, as in LeNet/VGG: ``norm_layer`` normalises the conv feature maps only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import BATCH_NORM, NormFactory
from experiments.layers.pooling import PoolingFactory
from experiments.models.encoder import Encoder


class CNN(nn.Module):
    """Encoder stages -> flatten -> (linear -> act -> dropout) per hidden layer -> class logits."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory,
        stages: int = 3,
        convs_per_stage: int = 1,
        width: int = 16,
        growth: float = 2.0,
        kernel_size: int = 3,
        norm_layer: NormFactory = BATCH_NORM,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(
            in_channels, act_layer, pool_layer, stages, convs_per_stage, width, growth, kernel_size, norm_layer,
            max_width,
        )
        size = self.encoder.output_size(image_size)
        if size < 1:
            raise ValueError(f"{stages} pooling stages shrink a {image_size}px image below one pixel")
        features = self.encoder.out_channels * size * size
        layers: list[nn.Module] = [nn.Flatten()]
        m = act_layer.width_multiplier
        for units in hidden:
            layers += [nn.Linear(features, units * m), act_layer(units), nn.Dropout(dropout)]
            features = units
        layers.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))
