"""``fcn``: the ``cnn`` classifier convolutionalised into a segmenter (Long et al. 2015).

The encoder is the very ``Encoder`` the classifier uses; the fully connected layers become
convolutions (fc6: a k x k conv over the last pooled map, fc7: 1x1), a 1x1 conv scores every class at
every position, and the ``upsampling`` group brings the score map back to the input size. So the
network outputs a labelled map instead of a probability, which is the whole idea of the paper.

``variant`` fuses skip scores as the paper does: ``32s`` upsamples the last pool's scores in one go;
``16s`` first upsamples them one pooling step, adds 1x1-conv scores of the previous pool's output, and
upsamples the sum; ``8s`` does this for two earlier pools. With VGG-16's five pools the names are the
output strides (32, 16, 8); here they name the number of fused pools (0, 1, 2), and the strides are
``2**stages`` divided by 1, 2, 4 — with the default three stages on 64 px images that is 8, 4 and 2,
the same fraction of the image as FCN-8s's stride 8 on 256 px crops.
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
from experiments.specs import FCN_VARIANTS, EncoderSpec


@torch.no_grad()
def zero_(conv: nn.Conv2d) -> nn.Conv2d:
    """Zero a skip-score conv, as Long et al. 2015 do, "so that the net starts with unmodified predictions".

    A randomly initialised skip adds noise from shallow features to the coarse scores from the start;
    zero lets each skip grow in only as far as it helps (about +0.02 mean IoU in a shapes_seg prototype).
    ``keep_init`` stops the global initialiser from overwriting it.
    """
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    conv.keep_init = True
    return conv


class FCN(nn.Module):
    """Encoder -> fc6 (k x k conv) -> fc7 (1x1) -> class scores -> skip fusion -> upsampled to the input."""

    #: the encoder's shape unless told otherwise (conf/model/fcn.yaml says the same; tests/test_specs.py checks)
    ENCODER: ClassVar[EncoderSpec] = EncoderSpec(stages=3, convs_per_stage=2, width=16)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory,
        upsample_layer: UpsamplingFactory,
        encoder: EncoderSpec | None = None,
        norm_layer: NormFactory = BATCH_NORM,
        fc_width: int = 64,
        fc_kernel: int = 3,
        dropout: float = 0.0,
        variant: str = "8s",
    ) -> None:
        super().__init__()
        spec = encoder or self.ENCODER
        stages = spec.stages
        if variant not in FCN_VARIANTS:
            raise ValueError(f"unknown FCN variant {variant!r}; choose one of {list(FCN_VARIANTS)}")
        skips = FCN_VARIANTS[variant]
        if skips > stages - 1:
            raise ValueError(f"FCN-{variant} fuses {skips} earlier pools, so it needs at least {skips + 1} stages")
        self.with_indices = upsample_layer.needs_indices
        self.encoder = Encoder(in_channels, act_layer, pool_layer, spec, norm_layer, return_indices=self.with_indices)
        widths, factor = self.encoder.widths, pool_layer.factor
        # the classifier's fully connected layers, as convolutions (dropout as in VGG's fc6/fc7)
        self.head = nn.Sequential(
            ConvBlock(self.encoder.out_channels, fc_width, act_layer, fc_kernel, norm_layer),
            nn.Dropout2d(dropout),
            ConvBlock(fc_width, fc_width, act_layer, 1, norm_layer),
            nn.Dropout2d(dropout),
        )
        self.score = nn.Conv2d(fc_width, num_classes, 1)
        # fusion j (1..skips) goes from pool S-j to pool S-j-1 and adds that pool's 1x1 scores
        self.fuse_up = nn.ModuleList(
            upsample_layer.path(num_classes, [factor], [widths[stages - j]]) for j in range(1, skips + 1)
        )
        self.skip_scores = nn.ModuleList(
            zero_(nn.Conv2d(widths[stages - j - 1], num_classes, 1)) for j in range(1, skips + 1)
        )
        # then undo the remaining pools (stages S-skips-1 .. 0) back to the input size
        remaining = stages - skips
        self.final_up = upsample_layer.path(
            num_classes, [factor] * remaining, [widths[i] for i in reversed(range(remaining))]
        )
        self.skips = skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, indices, sizes = self.encoder.forward_stages(x, self.with_indices)
        depth = len(outputs)
        score = self.score(self.head(outputs[-1]))
        for j in range(1, self.skips + 1):
            i = depth - j  # the pool being undone
            score = self.fuse_up[j - 1](score, [sizes[i]], [indices[i]])
            score = score + self.skip_scores[j - 1](outputs[i - 1])
        rest = range(depth - self.skips - 1, -1, -1)
        return self.final_up(score, [sizes[i] for i in rest], [indices[i] for i in rest])
