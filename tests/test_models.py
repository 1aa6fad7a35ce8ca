"""Models: forward/backward for every activation x pooling, parameter counts against formulas and the paper."""

from __future__ import annotations

import pytest
import torch

from experiments.layers.activation import ACTIVATIONS, activation_factory
from experiments.layers.norm import norm_factory
from experiments.layers.pooling import POOLINGS, pooling_factory
from experiments.models.cnn import CNN
from experiments.models.resnet import ResNet
from experiments.specs import EncoderSpec


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("pool", POOLINGS)
def test_cnn_forward_backward(act: str, pool: str) -> None:
    net = CNN(3, 5, 16, activation_factory(act), pooling_factory(pool), EncoderSpec(stages=2, width=4), hidden=[8])
    x = torch.randn(3, 3, 16, 16)
    out = net(x)
    assert out.shape == (3, 5)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("residual", [True, False])
def test_resnet_forward_backward(act: str, residual: bool) -> None:
    net = ResNet(3, 5, activation_factory(act), depth=8, residual=residual, width=4)
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert net.stem[0].weight.grad is not None


# He et al. 2016, Table 6 (CIFAR-10): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M; exact counts with option A shortcuts.
@pytest.mark.parametrize(
    ("depth", "paper_millions", "exact"),
    [(20, 0.27, 269_722), (32, 0.46, 464_154), (44, 0.66, 658_586), (56, 0.85, 853_018), (110, 1.7, 1_727_962)],
)
def test_resnet_parameter_counts_match_he_2016(depth: int, paper_millions: float, exact: int) -> None:
    net = ResNet(3, 10, activation_factory("relu"), depth=depth)
    count = n_params(net)
    assert count == exact
    assert float(f"{count / 1e6:.2g}") == paper_millions
    # the plain counterpart has exactly the same layers
    assert n_params(ResNet(3, 10, activation_factory("relu"), depth=depth, residual=False)) == exact


def test_cnn_parameter_count_equals_layer_formulas() -> None:
    c, k, w, hidden, classes, size = 3, 3, 8, 32, 5, 16
    net = CNN(c, classes, size, activation_factory("relu"), pooling_factory("max"),
              EncoderSpec(stages=2, width=w, kernel_size=k), norm_layer=norm_factory("batch"), hidden=[hidden])
    conv1 = c * w * k * k + 2 * w  # no conv bias with batch norm; BN has weight + bias
    conv2 = w * 2 * w * k * k + 2 * 2 * w
    fc1 = (2 * w * (size // 4) ** 2) * hidden + hidden
    fc2 = hidden * classes + classes
    assert n_params(net) == conv1 + conv2 + fc1 + fc2


def test_maxout_widens_the_preceding_layer() -> None:
    one = EncoderSpec(stages=1, width=4)
    plain = CNN(3, 5, 16, activation_factory("relu"), pooling_factory("max"), one, hidden=[8],
                norm_layer=norm_factory("none"))
    maxout = CNN(3, 5, 16, activation_factory("maxout", pieces=3), pooling_factory("max"), one,
                 hidden=[8], norm_layer=norm_factory("none"))
    assert maxout.encoder.stages[0].convs[0][0].out_channels == 12
    conv = 3 * 4 * 9 + 4
    fc = 4 * 8 * 8 * 8 + 8
    assert n_params(plain) == conv + fc + 8 * 5 + 5
    assert n_params(maxout) == 3 * conv + 3 * fc + 8 * 5 + 5


def test_deep_plain_cnn_is_one_override_away() -> None:
    deep = EncoderSpec(stages=4, convs_per_stage=3)
    net = CNN(3, 5, 32, activation_factory("sigmoid"), pooling_factory("max"), deep, norm_layer=norm_factory("none"))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 12
