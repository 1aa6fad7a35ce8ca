"""``autoencoder``: the shared encoder and a mirrored decoder that reconstructs the input — no labels needed.

The unsupervised side of the supervised/unsupervised contrast. The encoder is the very ``Encoder`` the
``cnn`` classifier and ``fcn`` use (same activation, pooling and norm factories, same parameter names), so
its weights can start a classifier (``encoder_from=<run dir>``, unsupervised pre-training as in Erhan et al.
2010) and a linear probe of its pooled features measures what reconstruction taught it. The decoder mirrors
the encoder stage by stage: the ``upsampling`` group undoes each pooling step (bilinear, nearest, a
bilinear-initialised transposed conv, or max-unpooling with that pool's own indices, as SegNet decodes), and
``convs_per_stage`` conv blocks bring the channels back down to the previous stage's width. Every upsampling
step targets the exact pre-pool size, so odd input sizes come back exactly.

``bottleneck`` squeezes the encoder's last map through a 1x1 conv block of that many channels (then widens it
back), which sets how much the code can hold; ``noise_std`` > 0 makes it a denoising autoencoder (Vincent et
al. 2008): Gaussian noise of that standard deviation (in units of the data's standard deviation, since the
inputs are standardised) corrupts the input in training mode only, while the task's target stays the clean
input. The output is one unbounded value per input channel and pixel; what it means (a standardised pixel
for ``loss=pixel_mse``, a pixel logit for ``loss=pixel_bce``) is the loss's business
(:mod:`experiments.tasks.reconstruction`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import BATCH_NORM, NormFactory
from experiments.layers.pooling import PoolingFactory
from experiments.layers.upsampling import UpsamplingFactory
from experiments.models.encoder import ConvBlock, Encoder
from experiments.specs import EncoderSpec


class Autoencoder(nn.Module):
    """Encoder -> bottleneck (1x1 in, 1x1 out) -> per stage, deepest first: upsample, conv blocks -> image."""

    #: the encoder's shape unless told otherwise: the cnn's, so that its weights fit a cnn built alike
    #: (conf/model/autoencoder.yaml says the same; tests/test_specs.py checks)
    ENCODER: ClassVar[EncoderSpec] = EncoderSpec(stages=3, convs_per_stage=1, width=16)

    def __init__(
        self,
        in_channels: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory,
        upsample_layer: UpsamplingFactory,
        encoder: EncoderSpec | None = None,
        norm_layer: NormFactory = BATCH_NORM,
        bottleneck: int | None = 32,
        noise_std: float = 0.0,
    ) -> None:
        super().__init__()
        spec = encoder or self.ENCODER
        stages, convs_per_stage, kernel_size = spec.stages, spec.convs_per_stage, spec.kernel_size
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if bottleneck is not None and bottleneck < 1:
            raise ValueError(f"bottleneck must be a positive channel count or None, got {bottleneck}")
        self.with_indices = upsample_layer.needs_indices
        self.encoder = Encoder(in_channels, act_layer, pool_layer, spec, norm_layer, return_indices=self.with_indices)
        widths, factor = self.encoder.widths, pool_layer.factor
        deepest = widths[-1]
        # the code: squeezed to `bottleneck` channels, then widened back so that unpooling's indices fit it
        self.bottleneck = nn.Sequential(
            ConvBlock(deepest, bottleneck, act_layer, 1, norm_layer),
            ConvBlock(bottleneck, deepest, act_layer, 1, norm_layer),
        ) if bottleneck is not None else nn.Identity()
        self.upsample = nn.ModuleList(
            upsample_layer(widths[i], factor, index_channels=widths[i]) if factor > 1 else nn.Identity()
            for i in reversed(range(stages))
        )
        # stage i of the decoder mirrors encoder stage i: widths[i] -> widths[i-1] (the first stage's width at the end)
        self.decoder = nn.ModuleList(
            nn.Sequential(*(
                ConvBlock(widths[i], widths[max(i - 1, 0)] if j == convs_per_stage - 1 else widths[i], act_layer,
                          kernel_size, norm_layer)
                for j in range(convs_per_stage)
            ))
            for i in reversed(range(stages))
        )
        self.head = nn.Conv2d(widths[0], in_channels, kernel_size, padding=kernel_size // 2)
        self.factor = factor
        self.noise_std = float(noise_std)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The denoising corruption: additive Gaussian noise, in training mode only (evaluation sees clean input)."""
        if self.training and self.noise_std > 0:
            return x + self.noise_std * torch.randn_like(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, indices, sizes = self.encoder.forward_stages(self.corrupt(x), self.with_indices)
        y = self.bottleneck(outputs[-1])
        for step, (up, convs) in enumerate(zip(self.upsample, self.decoder, strict=True)):
            i = len(outputs) - 1 - step  # the pool being undone
            if self.factor > 1:
                y = up(y, sizes[i], indices[i])
            y = convs(y)
        return self.head(y)
