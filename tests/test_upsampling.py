"""Upsampling group: the deconvolution is bilinear interpolation, unpooling undoes max-pooling, sizes are exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.layers.init import initialise
from experiments.layers.upsampling import UPSAMPLINGS, BilinearTransposed, bilinear_kernel, upsampling_factory


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bilinear_transposed_conv_reproduces_interpolate_away_from_borders(factor: int) -> None:
    x = torch.randn(2, 3, 7, 9)
    up = upsampling_factory("transposed")(3, factor)
    out = up(x, (7 * factor, 9 * factor))
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == expected.shape
    inner = (..., slice(factor, -factor), slice(factor, -factor))  # interpolation clamps at the border, deconv pads 0
    torch.testing.assert_close(out[inner], expected[inner], atol=1e-5, rtol=0)
    assert not torch.allclose(out, expected)  # ... and the borders do differ, which is why they are excluded


def test_bilinear_kernel_is_long_et_al_upsample_filt() -> None:
    assert bilinear_kernel(2)[0].tolist() == pytest.approx([0.0625, 0.1875, 0.1875, 0.0625])  # outer([.25,.75,...])
    k3 = bilinear_kernel(3)
    assert k3.shape == (5, 5) and k3[2, 2] == 1.0  # odd factor: the centre tap copies the input pixel
    assert bilinear_kernel(4).sum().item() == pytest.approx(16.0)  # each input spreads over factor^2 outputs


def test_transposed_is_learnable_or_frozen_and_survives_global_init() -> None:
    learnable = upsampling_factory("transposed", learnable=True)(4, 2)
    frozen = upsampling_factory("transposed", learnable=False)(4, 2)
    assert learnable.conv.weight.requires_grad and not frozen.conv.weight.requires_grad
    net = initialise(nn.Sequential(nn.Conv2d(4, 4, 3), learnable), "kaiming", 2.0)
    # diagonal bilinear kernel: channel c upsamples channel c only
    assert torch.equal(net[1].conv.weight[1, 1], bilinear_kernel(2))
    assert net[1].conv.weight[0, 1].abs().sum() == 0


def test_unpool_puts_values_back_at_the_pooling_argmax() -> None:
    x = torch.randn(2, 3, 8, 10)
    pooled, indices = nn.MaxPool2d(2, 2, return_indices=True)(x)
    out = upsampling_factory("unpool")(3, 2)(pooled, (8, 10), indices)
    is_max = x == F.interpolate(pooled, scale_factor=2, mode="nearest")  # where each window's maximum sits
    assert torch.equal(out[is_max], x[is_max])
    assert (out[~is_max] == 0).all()
    assert is_max.view(2, 3, 4, 2, 5, 2).sum(dim=(3, 5)).eq(1).all()  # exactly one value per window


def test_unpool_of_odd_input_returns_the_pre_pool_size() -> None:
    x = torch.randn(1, 2, 9, 7)
    pooled, indices = nn.MaxPool2d(2, 2, return_indices=True)(x)
    out = upsampling_factory("unpool")(2, 2)(pooled, x.shape[-2:], indices)
    assert out.shape == x.shape
    assert (out[..., -1, :] == 0).all() and (out[..., :, -1] == 0).all()  # the rows the pool dropped stay empty


def test_unpool_of_a_narrower_map_lifts_to_the_index_channels() -> None:
    """Class scores (2 maps) unpooled with a 6-channel pool's indices: values land only at recorded argmaxes,
    then a 3x3 decoder conv densifies the sparse map."""
    features = torch.randn(1, 6, 8, 8)
    _, indices = nn.MaxPool2d(2, 2, return_indices=True)(features)
    up = upsampling_factory("unpool")(2, 2, index_channels=6)
    nn.init.zeros_(up.lift.bias)
    scores = torch.randn(1, 2, 4, 4)
    sparse = up.place(scores, (8, 8), indices)
    assert sparse.shape == (1, 6, 8, 8)
    torch.testing.assert_close(sparse.flatten(2).gather(2, indices.flatten(2)), up.lift(scores).flatten(2))
    assert (sparse != 0).sum() == 6 * 16  # one value per window and channel, the rest empty
    dense = up(scores, (8, 8), indices)
    assert dense.shape == (1, 2, 8, 8) and (dense != 0).float().mean() > 0.9


def test_unpool_without_indices_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="indices of the matching max-pool"):
        upsampling_factory("unpool")(2, 2)(torch.randn(1, 2, 4, 4), (8, 8))


@pytest.mark.parametrize("name", UPSAMPLINGS)
@pytest.mark.parametrize("size", [(16, 16), (17, 19)])
def test_every_method_returns_the_exact_requested_size(name: str, size: tuple[int, int]) -> None:
    x = torch.randn(1, 3, *size)
    pooled, indices = nn.MaxPool2d(2, 2, return_indices=True)(x)
    out = upsampling_factory(name)(3, 2)(pooled, size, indices)
    assert out.shape == (1, 3, *size)


def test_interpolation_pads_the_dropped_row_instead_of_stretching() -> None:
    """A 5-px map pooled to 2 and upsampled keeps pixels on the pooling grid; the 5th row repeats the 4th."""
    x = torch.arange(4.0).view(1, 1, 2, 2)
    out = upsampling_factory("nearest")(1, 2)(x, (5, 5))
    assert torch.equal(out[..., :4, :4], x.repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert torch.equal(out[..., 4, :], out[..., 3, :]) and torch.equal(out[..., :, 4], out[..., :, 3])


def test_path_merges_fixed_methods_and_steps_unpooling() -> None:
    assert len(upsampling_factory("bilinear").path(3, [2, 2, 2]).steps) == 1  # one x8, like FCN-32s
    unpool = upsampling_factory("unpool").path(3, [2, 2], [8, 4])
    assert len(unpool.steps) == 2  # one per pool, each with its own indices
    assert upsampling_factory("unpool").needs_indices and not upsampling_factory("transposed").needs_indices
    with pytest.raises(ValueError, match="unknown upsampling"):
        upsampling_factory("bicubic")
    assert isinstance(upsampling_factory("transposed").path(3, [2, 2]).steps[0], BilinearTransposed)
