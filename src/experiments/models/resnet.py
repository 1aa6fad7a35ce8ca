"""``resnet``: the CIFAR ResNet of He et al. 2016 (sec. 4.2), depth 6n+2, 16/32/64 filters.

Shortcuts are option A: identity, with stride-2 subsampling and zero-padded extra channels when the
shape changes, so the residual net has exactly the parameters of its plain counterpart
(``residual=False``): 269,722 for depth 20 with 10 classes. Down-sampling is by stride-2
convolutions as in the paper, so the ``pooling`` group does not apply here (validation says so).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import BATCH_NORM, NormFactory
from experiments.specs import RESNET_DEPTHS, resnet_blocks_per_stage


def _conv3x3(cin: int, cout: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class BasicBlock(nn.Module):
    """conv-norm-act-conv-norm (+ shortcut) -> act.

    With Maxout (k pieces) the second conv emits k x C channels and the shortcut is repeated k times
    before the addition, so the block computes ``x + max_j(residual_j)`` — the natural maxout residual.
    """

    def __init__(
        self, cin: int, cout: int, stride: int, act_layer: ActivationFactory, norm_layer: NormFactory,
        residual: bool,
    ) -> None:
        super().__init__()
        m = act_layer.width_multiplier
        bias = norm_layer.conv_bias
        self.conv1 = _conv3x3(cin, cout * m, stride, bias)
        self.norm1 = norm_layer(cout * m)
        self.act1 = act_layer(cout)
        self.conv2 = _conv3x3(cout, cout * m, 1, bias)
        self.norm2 = norm_layer(cout * m)
        self.act2 = act_layer(cout)
        self.residual = residual
        self.stride = stride
        self.extra_channels = cout - cin
        self.pieces = m

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        if self.pieces > 1:
            x = x.repeat_interleave(self.pieces, dim=1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.residual:
            out = out + self.shortcut(x)
        return self.act2(out)


class ResNet(nn.Module):
    """CIFAR ResNet-(6n+2); ``residual=False`` gives the plain net with identical layers."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        act_layer: ActivationFactory,
        depth: int = 20,
        residual: bool = True,
        width: int = 16,
        norm_layer: NormFactory = BATCH_NORM,
    ) -> None:
        super().__init__()
        n = resnet_blocks_per_stage(depth)
        if n is None:
            raise ValueError(f"ResNet depth must be 6n+2 ({', '.join(map(str, RESNET_DEPTHS))}), got {depth}")
        m = act_layer.width_multiplier
        self.stem = nn.Sequential(
            _conv3x3(in_channels, width * m, 1, norm_layer.conv_bias), norm_layer(width * m), act_layer(width)
        )
        blocks: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(cin, cout, stride, act_layer, norm_layer, residual))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))
