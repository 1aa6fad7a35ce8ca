"""``dilated``: a front-end with little down-sampling plus the context module of Yu & Koltun 2016.

Dilated convolutions grow the receptive field exponentially without pooling, so the network can see a
whole object while keeping a fine output grid — the opposite trade from the FCN, which pools to see
far and then has to recover the resolution with skips.

* Front-end: ``stages`` pooled encoder stages (the same ``Encoder`` as ``cnn``), then ``dilated_stages``
  stages whose pooling is removed and whose convs are dilated 2, 4, ... instead — Yu & Koltun's surgery
  on VGG-16 (pool4/pool5 removed, conv5 dilated 2, fc6 dilated 4) — and a 1x1 conv to
  ``context_width`` maps (the paper's front-end emits its C class scores here).
* Context module: 3x3 convs with ``dilations`` (paper: 1, 1, 2, 4, 8, 16, 1), each followed by the
  activation, then a 1x1 conv to the class scores. ``identity_init`` sets every context conv to the
  identity, as the paper does, so that training starts from the front-end's own prediction instead of
  destroying it with random filters.
* The ``upsampling`` group undoes the front-end's pools back to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import BATCH_NORM, NormFactory
from experiments.layers.pooling import PoolingFactory
from experiments.layers.upsampling import UpsamplingFactory
from experiments.models.encoder import ConvBlock, Encoder
from experiments.specs import EncoderSpec

PAPER_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


@torch.no_grad()
def identity_(conv: nn.Conv2d, pieces: int = 1) -> nn.Conv2d:
    """Set ``conv`` to pass its input through: centre tap 1 from input channel ``o // pieces`` to output ``o``.

    With Maxout the conv emits ``pieces`` copies per channel, all equal, so their max is the input again.
    ``keep_init`` stops the global initialiser from overwriting it.
    """
    conv.weight.zero_()
    out_channels, in_channels, kh, kw = conv.weight.shape
    for o in range(out_channels):
        if o // pieces < in_channels:
            conv.weight[o, o // pieces, kh // 2, kw // 2] = 1.0
    if conv.bias is not None:
        conv.bias.zero_()
    conv.keep_init = True
    return conv


class DilatedNet(nn.Module):
    """Pooled front-end -> dilated stages -> context module -> class scores upsampled to the input size."""

    #: the pooled front-end's shape unless told otherwise (conf/model/dilated.yaml says the same;
    #: tests/test_specs.py checks): two pools, output stride 4
    ENCODER: ClassVar[EncoderSpec] = EncoderSpec(stages=2, convs_per_stage=2, width=16)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory,
        upsample_layer: UpsamplingFactory,
        encoder: EncoderSpec | None = None,
        norm_layer: NormFactory = BATCH_NORM,
        dilated_stages: int = 1,
        context_width: int = 32,
        dilations: Sequence[int] = PAPER_DILATIONS,
        identity_init: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        spec = encoder or self.ENCODER
        stages = spec.stages
        if stages < 1:
            raise ValueError("the dilated network needs at least one pooled stage (use pooling=none to keep size)")
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"context dilations must be positive integers, got {list(dilations)}")
        self.with_indices = upsample_layer.needs_indices
        self.encoder = Encoder(in_channels, act_layer, pool_layer, spec, norm_layer, return_indices=self.with_indices)
        blocks: list[nn.Module] = []
        channels = self.encoder.out_channels
        for s in range(dilated_stages):  # the encoder's growth goes on; dilation 2, 4, ... replaces the pool
            out = spec.stage_width(stages + s)
            for j in range(spec.convs_per_stage):
                blocks.append(
                    ConvBlock(
                        channels if j == 0 else out, out, act_layer, spec.kernel_size, norm_layer,
                        dilation=2 ** (s + 1),
                    )
                )
            channels = out
        self.dilated = nn.Sequential(*blocks)
        self.to_context = nn.Sequential(nn.Conv2d(channels, context_width, 1), nn.Dropout2d(dropout))
        pieces = act_layer.width_multiplier
        layers = []
        for d in dilations:
            block = ConvBlock(context_width, context_width, act_layer, 3, norm_layer, dilation=int(d))
            if identity_init:
                identity_(block[0], pieces)
            layers.append(block)
        self.context = nn.Sequential(*layers)
        self.score = nn.Conv2d(context_width, num_classes, 1)
        if identity_init and context_width == num_classes:
            identity_(self.score)
        widths = self.encoder.widths
        self.upsample = upsample_layer.path(
            num_classes, [pool_layer.factor] * stages, [widths[i] for i in reversed(range(stages))]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, indices, sizes = self.encoder.forward_stages(x, self.with_indices)
        features = self.dilated(outputs[-1])
        score = self.score(self.context(self.to_context(features)))
        rest = range(len(outputs) - 1, -1, -1)
        return self.upsample(score, [sizes[i] for i in rest], [indices[i] for i in rest])
