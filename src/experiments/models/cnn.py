"""``cnn``: a plain VGG/LeNet-style classifier — conv stages, then fully connected layers.

Everything the classic ablations vary is a constructor argument (the encoder's shape: one ``EncoderSpec``) or a
layer factory, so "a deep plain net" is one command line (``model.stages=4 model.convs_per_stage=3 norm=none``:
the flat keys become the ``EncoderSpec``, ``build.build_network``). The fully connected head
has no normalisation, as in LeNet/VGG: ``norm_layer`` normalises the conv feature maps only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import BATCH_NORM, NormFactory
from experiments.layers.pooling import PoolingFactory
from experiments.models.encoder import Encoder
from experiments.specs import EncoderSpec


class CNN(nn.Module):
    """Encoder stages -> flatten -> (linear -> act -> dropout) per hidden layer -> class logits."""

    #: the encoder's shape unless told otherwise (conf/model/cnn.yaml says the same; tests/test_specs.py checks)
    ENCODER: ClassVar[EncoderSpec] = EncoderSpec(stages=3, convs_per_stage=1, width=16)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory,
        encoder: EncoderSpec | None = None,
        norm_layer: NormFactory = BATCH_NORM,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        spec = encoder or self.ENCODER
        self.encoder = Encoder(in_channels, act_layer, pool_layer, spec, norm_layer)
        size = self.encoder.output_size(image_size)
        if size < 1:
            raise ValueError(f"{spec.stages} pooling stages shrink a {image_size}px image below one pixel")
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
