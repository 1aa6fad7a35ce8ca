"""Pooling's invariance inside the network (diagnostics/invariance.py): the per-stage relative change of the feature
maps under a shifted input, checked against hand computations, and reported by a real ``experiment=pooling`` run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.diagnostics.invariance import per_image_differences, relative_difference, stage_differences
from experiments.layers.activation import activation_factory
from experiments.layers.norm import norm_factory
from experiments.layers.pooling import pooling_factory
from experiments.models.encoder import Encoder
from experiments.run.layout import RunDir
from experiments.specs import EncoderSpec


def identity_encoder(pooling: str, stages: int = 1) -> Encoder:
    """One-channel stages of a 1x1 conv of weight 1 (no bias, no norm) -> ReLU -> ``pooling``: on a non-negative
    image every stage before pooling is the identity, so the numbers can be worked out by hand."""
    spec = EncoderSpec(stages=stages, convs_per_stage=1, width=1, growth=1.0, kernel_size=1)
    encoder = Encoder(1, activation_factory("relu"), pooling_factory(pooling), spec, norm_factory("none"))
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.ones_(module.weight)
            if module.bias is not None:  # norm=none gives the conv a bias
                nn.init.zeros_(module.bias)
    return encoder.eval()


class Wrapped(nn.Module):
    """A network as the diagnostics see one: stages under ``encoder``."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder


def dot(at: tuple[int, int], size: int = 4) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size)
    x[0, 0, at[0], at[1]] = 1.0
    return x


def test_no_shift_means_no_difference() -> None:
    torch.manual_seed(0)
    network = Wrapped(Encoder(3, activation_factory("relu"), pooling_factory("max"), EncoderSpec(stages=2, width=4),
                              norm_factory("batch"))).eval()
    assert stage_differences(network, torch.randn(3, 3, 8, 8), shift=0) == [0.0, 0.0]


def test_a_moved_dot_by_hand_without_pooling_and_with_max_pooling() -> None:
    """A single 1 at (1, 1) of a 4x4 image, moved one pixel each way. Without pooling the map moves with it: the
    difference is sqrt(1 + 1) / 1 in every direction. A 2x2 max pool keeps the dot in its window when it moves left
    or up (difference 0) and moves it to the next window right or down (sqrt 2): a mean of sqrt(2) / 2."""
    x = dot((1, 1))
    none = per_image_differences(Wrapped(identity_encoder("none")), x, shift=1)
    pooled = per_image_differences(Wrapped(identity_encoder("max")), x, shift=1)
    assert none.item() == pytest.approx(math.sqrt(2))
    assert pooled.item() == pytest.approx(math.sqrt(2) / 2)
    assert pooled.item() < none.item()
    # two images: per image, then the mean over them; (2, 2) sits in the window's corner the other way round
    both = torch.cat([x, dot((2, 2))])
    assert stage_differences(Wrapped(identity_encoder("max")), both, shift=1) == pytest.approx([math.sqrt(2) / 2])


def test_global_average_pooling_is_exactly_invariant_to_a_circular_shift() -> None:
    encoder = identity_encoder("none", stages=2)
    encoder.stages[1].pool = nn.AdaptiveAvgPool2d(1)  # the second stage: global average pooling
    x = torch.rand(5, 1, 8, 8)
    first, second = stage_differences(Wrapped(encoder), x, shift=3)
    assert second == pytest.approx(0.0, abs=1e-6)  # a mean over all positions ignores where (float32 sum order)
    moves = [torch.roll(x, k, dims=d) for k in (3, -3) for d in (-1, -2)]
    expected = sum(relative_difference(x, moved) for moved in moves) / 4
    assert first == pytest.approx(float(expected.mean()))  # stage 1 is the identity: the input's own change


def test_an_all_zero_map_is_left_out_of_the_mean() -> None:
    images = torch.cat([dot((1, 1)), torch.zeros(1, 1, 4, 4)])
    assert stage_differences(Wrapped(identity_encoder("none")), images, shift=1) == pytest.approx([math.sqrt(2)])


def test_a_pooling_study_run_reports_the_stage_differences_and_draws_them(make_cfg) -> None:
    from experiments.train import train

    cfg = make_cfg(["experiment=pooling", "pooling=none", "model.width=4", "+trainer.limit_train_batches=2",
                    "+trainer.limit_val_batches=1", "diagnostics.invariance.images=16", "print_config=false"])
    assert train(cfg)["status"] == "completed"
    run = RunDir(cfg.run_dir)
    metrics = json.loads(Path(run.metrics).read_text())["metrics"]
    stages = sorted(k for k in metrics if k.startswith("test/shift_diff_stage"))
    assert stages == ["test/shift_diff_stage1", "test/shift_diff_stage2", "test/shift_diff_stage3"]
    assert all(0.0 < metrics[k] < 2.0 for k in stages)  # no pooling: every stage moves with the image
    assert len(list(run.figure("diagnostics/shift_invariance", 0).parent.glob("step_*.png"))) == 1
