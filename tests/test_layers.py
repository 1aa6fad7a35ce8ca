"""Layer factories: output shapes, Maxout semantics, parameter counts, init statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from experiments.layers.activation import ACTIVATIONS, Maxout, activation_factory
from experiments.layers.init import initialise
from experiments.layers.pooling import POOLINGS, pooling_factory


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_keeps_shape_after_widening(name: str) -> None:
    act = activation_factory(name)
    x = torch.randn(4, 8 * act.width_multiplier, 5, 5)
    assert act(8)(x).shape == (4, 8, 5, 5)
    assert act.gain > 0


def test_maxout_takes_max_over_groups_of_pieces() -> None:
    x = torch.tensor([[1.0, 5.0, -2.0, 3.0, 0.0, 4.0]])  # 2 output units, 3 pieces each
    assert Maxout(3)(x).tolist() == [[5.0, 4.0]]
    conv_like = torch.arange(2 * 6 * 2 * 2, dtype=torch.float).view(2, 6, 2, 2)
    out = Maxout(2)(conv_like)
    assert out.shape == (2, 3, 2, 2)
    assert torch.equal(out, torch.maximum(conv_like[:, 0::2], conv_like[:, 1::2]))
    assert activation_factory("maxout", pieces=4).width_multiplier == 4


def test_maxout_rejects_one_piece() -> None:
    with pytest.raises(ValueError, match="pieces >= 2"):
        activation_factory("maxout", pieces=1)


def test_gains_follow_calculate_gain() -> None:
    assert activation_factory("relu").gain == pytest.approx(math.sqrt(2))
    assert activation_factory("tanh").gain == pytest.approx(5 / 3)
    assert activation_factory("sigmoid").gain == 1.0
    slope = 0.2
    assert activation_factory("leaky_relu", negative_slope=slope).gain == pytest.approx(math.sqrt(2 / (1 + slope**2)))


def test_prelu_is_per_channel() -> None:
    assert sum(p.numel() for p in activation_factory("prelu")(16).parameters()) == 16


@pytest.mark.parametrize("name", POOLINGS)
def test_pooling_halves_or_keeps_size(name: str) -> None:
    pool = pooling_factory(name)
    out = pool(8)(torch.randn(2, 8, 16, 16))
    expected = 16 // pool.factor
    assert out.shape == (2, 8, expected, expected)


def test_stride_pooling_is_a_learnable_conv_with_formula_params() -> None:
    module = pooling_factory("stride")(8)
    assert sum(p.numel() for p in module.parameters()) == 8 * 8 * 2 * 2 + 8


def test_max_pooling_can_record_indices_but_others_cannot() -> None:
    out, idx = pooling_factory("max")(4, return_indices=True)(torch.randn(1, 4, 8, 8))
    assert out.shape == idx.shape == (1, 4, 4, 4)
    with pytest.raises(ValueError, match="only max pooling"):
        pooling_factory("avg")(4, return_indices=True)


@pytest.mark.parametrize(
    ("scheme", "expected_std"),
    [
        ("kaiming", math.sqrt(2) / math.sqrt(64 * 9)),  # N(0, gain^2/fan_in) with the ReLU gain
        ("standard", 1 / math.sqrt(64 * 9) / math.sqrt(3)),  # U[-1/sqrt(n), 1/sqrt(n)] has std bound/sqrt(3)
        ("xavier", math.sqrt(2) * math.sqrt(2 / (64 * 9 + 128 * 9))),  # gain * sqrt(2/(fan_in+fan_out))
    ],
)
def test_init_schemes_have_formula_std(scheme: str, expected_std: float) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 128, 3)
    initialise(conv, scheme, gain=math.sqrt(2))
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
