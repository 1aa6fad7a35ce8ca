"""Receptive-field analysis: hand-computed values and the gradient probe as an oracle."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.analysis.receptive_field import (
    TracingError,
    UnsupportedOperationError,
    analyze_receptive_field,
    effective_receptive_field,
    receptive_field,
    receptive_fields,
    save_erf_heatmap,
)


def hand_rf(layers: list[tuple[int, int, int]]) -> tuple[list[int], list[int]]:
    """Textbook recursion for a single path of (kernel, stride, dilation) layers."""
    rf, jump, rfs, jumps = 1, 1, [], []
    for k, s, d in layers:
        rf += (k - 1) * d * jump
        jump *= s
        rfs.append(rf)
        jumps.append(jump)
    return rfs, jumps


def context_module(channels: int = 4) -> nn.Sequential:
    """Yu & Koltun (2016) basic context module: 3x3 convs, dilations 1,1,2,4,8,16,1, then 1x1."""
    layers: list[nn.Module] = []
    for d in (1, 1, 2, 4, 8, 16, 1):
        layers += [nn.Conv2d(channels, channels, 3, padding=d, dilation=d), nn.ReLU()]
    layers.append(nn.Conv2d(channels, channels, 1))
    return nn.Sequential(*layers)


def classic_stack() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
    )


def strided_stem() -> nn.Sequential:
    """ResNet-like stem with a dilated and a strided conv: (7,2,1) (3,2,1) (3,1,2) (3,2,1)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
    )


def pooled_valid() -> nn.Sequential:
    """No padding, average pooling, a stride-3 conv and a non-square kernel."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 5),
        nn.Tanh(),
        nn.AvgPool2d(3, stride=2),
        nn.Conv2d(6, 6, 3, stride=3),
        nn.LeakyReLU(),
        nn.Conv2d(6, 4, (3, 1)),
    )


class TwoBranch(nn.Module):
    """Two conv branches of different receptive field joined by addition."""

    def __init__(self) -> None:
        super().__init__()
        self.a1 = nn.Conv2d(3, 8, 3, padding=1)
        self.a2 = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 3, padding=4, dilation=4)
        self.out = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a2(F.relu(self.a1(x)))  # rf 5
        b = self.b(x)  # rf 9
        return self.out(F.relu(a + b))  # rf max(5, 9) + 2 = 11


class BasicBlock(nn.Module):
    """CIFAR ResNet block; option-A shortcut: subsample x[:, :, ::2, ::2] and zero-pad channels."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x
        if self.stride != 1 or self.extra:
            shortcut = x[:, :, :: self.stride, :: self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(out + shortcut)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block1 = BasicBlock(8, 16, stride=2)
        self.block2 = BasicBlock(16, 16, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(F.relu(self.stem(x))))


class TinyFCN(nn.Module):
    """Encoder (conv, pool, conv, conv), upsampling back, plus a skip from the first conv."""

    def __init__(self, up: str = "nearest", skip_dilation: int = 1) -> None:
        super().__init__()
        self.up = up
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)  # rf 3
        self.pool = nn.MaxPool2d(2)  # rf 4, jump 2
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)  # rf 8
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)  # rf 12
        self.deconv = nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1)
        self.skip = nn.Conv2d(8, 8, 3, padding=skip_dilation, dilation=skip_dilation)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = F.relu(self.c1(x))
        y = F.relu(self.c3(F.relu(self.c2(self.pool(f1)))))
        y = self.deconv(y) if self.up == "deconv" else F.interpolate(y, size=f1.shape[-2:], mode=self.up)
        return self.head(y + self.skip(f1))


def test_context_module_receptive_fields() -> None:
    rows = receptive_fields(context_module(), (1, 4, 32, 32))
    assert [r.rf for r in rows] == [3, 5, 9, 17, 33, 65, 67, 67]
    assert [r.jump for r in rows] == [1] * 8
    assert [r.dilation for r in rows] == [1, 1, 2, 4, 8, 16, 1, 1]
    assert all(r.kind == "conv" for r in rows)
    assert receptive_field(context_module()) == 67  # input shape guessed from in_channels


def test_classic_stack_by_hand() -> None:
    rfs, jumps = hand_rf([(3, 1, 1), (3, 1, 1), (2, 2, 1), (3, 1, 1)])
    assert (rfs, jumps) == ([3, 5, 6, 10], [1, 1, 2, 2])
    rows = receptive_fields(classic_stack(), (1, 3, 32, 32))
    assert [r.rf for r in rows] == rfs
    assert [r.jump for r in rows] == jumps
    assert [r.kind for r in rows] == ["conv", "conv", "pool", "conv"]
    assert rows[-1].output_shape == (1, 8, 16, 16)


def test_strided_dilated_stem_by_hand() -> None:
    rfs, jumps = hand_rf([(7, 2, 1), (3, 2, 1), (3, 1, 2), (3, 2, 1)])
    rows = receptive_fields(strided_stem(), (1, 3, 64, 64))
    assert [r.rf for r in rows] == rfs == [7, 11, 27, 35]
    assert [r.jump for r in rows] == jumps == [2, 4, 4, 8]


def test_non_square_kernel_per_axis() -> None:
    rows = receptive_fields(pooled_valid(), (1, 3, 48, 48))
    rf_h, _ = hand_rf([(5, 1, 1), (3, 2, 1), (3, 3, 1), (3, 1, 1)])
    rf_w, _ = hand_rf([(5, 1, 1), (3, 2, 1), (3, 3, 1), (1, 1, 1)])
    assert rows[-1].rf_hw == (rf_h[-1], rf_w[-1]) == (23, 11)
    assert rows[-1].rf == 23


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (classic_stack, (1, 3, 32, 32)),
        (strided_stem, (1, 3, 64, 64)),
        (pooled_valid, (1, 3, 48, 48)),
        (lambda: context_module(4), (1, 4, 80, 80)),
        (TwoBranch, (1, 3, 24, 24)),
    ],
)
def test_analytic_rf_matches_gradient_probe(factory, shape) -> None:
    torch.manual_seed(0)
    model = factory()
    analysis = analyze_receptive_field(model, shape)
    assert analysis.rf < shape[-1]
    erf = effective_receptive_field(model, shape)
    assert erf.extent == analysis.output.rf_hw
    assert erf.effective[0] <= erf.extent[0] and erf.effective[1] <= erf.extent[1]


def test_two_branches_take_the_max() -> None:
    assert receptive_field(TwoBranch(), (1, 3, 24, 24)) == max(5, 9) + 2


def test_resnet_zero_pad_shortcut() -> None:
    torch.manual_seed(0)
    model = TinyResNet()
    analysis = analyze_receptive_field(model, (1, 3, 40, 40))
    # stem 3; block1 main: 3 + 2*1 = 5 (jump 2), + 2*2 = 9; shortcut: 3 at jump 2 -> max 9
    # block2 main: 9 + 4 + 4 = 17; identity shortcut 9 -> max 17
    shortcut = analysis.nodes["getitem"]
    assert (shortcut.rf, shortcut.jump, shortcut.kind) == (3, 2, "slice")
    assert analysis.module_calls["block1"].rf == 9
    assert analysis.module_calls["block1"].jump == 2
    assert analysis.rf == 17 and analysis.output.jump == 2
    erf = effective_receptive_field(model, (1, 3, 40, 40))
    assert erf.extent == (17, 17)


class OffsetPaths(nn.Module):
    """Two valid 3x3 convs cropped differently: unit 0 sees pixels 0..2 and 2..4."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x)[:, :, :-2, :-2] + self.b(x)[:, :, 2:, 2:]


def test_offset_paths_use_the_union() -> None:
    """Max over paths would say 3; the paths are offset, so the unit really sees 5 pixels."""
    model = OffsetPaths()
    assert receptive_field(model, (1, 3, 16, 16)) == 5
    assert effective_receptive_field(model, (1, 3, 16, 16)).extent == (5, 5)


@pytest.mark.parametrize(
    ("up", "skip_dilation", "expected"),
    [
        ("nearest", 1, max(12, 3 + 2)),  # coarse path dominates
        ("bilinear", 1, max(12 + 2, 3 + 2)),  # bilinear reads 2 coarse units: + 1 jump (2)
        ("nearest", 10, max(12, 3 + 20)),  # dilated skip dominates
        ("deconv", 1, max(12 + (3 // 2) * 2, 3 + 2)),  # k4 s2: floor(3/2) coarse units more
        ("deconv", 6, max(14, 3 + 12)),
    ],
)
def test_fcn_skip_is_max_over_paths(up: str, skip_dilation: int, expected: int) -> None:
    torch.manual_seed(0)
    model = TinyFCN(up, skip_dilation)
    analysis = analyze_receptive_field(model, (1, 3, 48, 48))
    assert analysis.rf == expected
    up_row = next(r for r in analysis.rows if r.kind in ("upsample", "conv_transpose"))
    assert up_row.jump == 1
    assert effective_receptive_field(model, (1, 3, 48, 48)).extent == (expected, expected)


def test_upsampling_makes_fractional_jumps() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 3))
    rows = receptive_fields(model, (1, 3, 8, 8))
    assert [r.kind for r in rows] == ["conv", "upsample", "conv"]
    assert rows[1].jump == 0.5 and rows[1].rf == 3
    assert rows[2].rf == 3 + 2 * 0.5


def test_classifier_is_global() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )
    rows = receptive_fields(model, (1, 3, 16, 16))
    assert [r.kind for r in rows] == ["conv", "global_pool", "flatten", "linear"]
    assert rows[0].rf == 3
    assert all(math.isinf(r.rf) and r.is_global for r in rows[1:])
    assert math.isinf(receptive_field(model, (1, 3, 16, 16)))
    erf = effective_receptive_field(model, (1, 3, 16, 16))
    assert erf.output_index == () and erf.extent == (16, 16)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 5, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, stride=1, padding=2)  # 5
        x = F.max_pool2d(x, 3, 2, 1)  # 7, jump 2
        x = F.avg_pool2d(x, kernel_size=2)  # 9, jump 4
        return x.mean((2, 3))


def test_functional_ops_are_rows() -> None:
    rows = receptive_fields(Functional(), (1, 3, 32, 32))
    assert [(r.kind, r.rf, r.jump) for r in rows[:3]] == [("conv", 5, 1), ("pool", 7, 2), ("pool", 9, 4)]
    assert rows[3].kind == "global_pool" and rows[3].is_global


class ChannelsLast(nn.Module):
    """ConvNeXt-style block: depthwise conv, then an MLP applied channels-last."""

    def __init__(self, flat: bool = False) -> None:
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)
        self.flat = flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x)
        if self.flat:
            return self.fc(y)  # Linear over W: mixes the whole row
        y = self.fc(self.norm(y.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + y


def test_channels_last_mlp_is_pointwise() -> None:
    assert receptive_field(ChannelsLast(), (1, 8, 16, 16)) == 7
    assert math.isinf(receptive_field(ChannelsLast(flat=True), (1, 8, 8, 8)))


class HalfSize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : x.shape[2] // 2, : x.shape[3] // 2] * 2


class Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_unknown_leaf_modules() -> None:
    keep = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Scale(), nn.Conv2d(4, 4, 3, padding=1))
    assert receptive_field(keep, (1, 3, 16, 16), leaf_modules=(Scale,)) == 5
    shrink = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), HalfSize(), nn.Conv2d(4, 4, 3, padding=1))
    with pytest.raises(UnsupportedOperationError, match=r"'1' \(HalfSize\)"):
        receptive_field(shrink, (1, 3, 16, 16), leaf_modules=(HalfSize,))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.conv(x)
        return x


def test_untraceable_model_raises_clear_error() -> None:
    with pytest.raises(TracingError, match="DataDependent"):
        receptive_fields(DataDependent(), (1, 3, 8, 8))


def test_analysis_and_probe_leave_the_model_alone() -> None:
    model = strided_stem().train()
    bn = model[1]
    before = bn.running_mean.clone()
    analyze_receptive_field(model, (2, 3, 32, 32))
    effective_receptive_field(model, (2, 3, 32, 32))
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(bn.running_mean, before)
    assert next(model.parameters()).dtype == torch.float32


def test_erf_ones_input_and_threshold() -> None:
    model = classic_stack()
    erf = effective_receptive_field(model, (1, 3, 32, 32), input_mode="ones", dtype=None)
    assert erf.grad.shape == (32, 32)
    assert erf.extent[0] <= 10 and erf.extent[1] <= 10
    tight = effective_receptive_field(model, (1, 3, 32, 32), threshold=0.5, input_mode="ones", dtype=None)
    assert 0 < tight.extent[0] <= erf.extent[0] and 0 < tight.extent[1] <= erf.extent[1]
    assert torch.equal(tight.grad, erf.grad)  # deterministic probe


def test_save_erf_heatmap_writes_png(tmp_path) -> None:
    erf = effective_receptive_field(classic_stack(), (1, 3, 24, 24), n_samples=1)
    path = save_erf_heatmap(erf, tmp_path / "plots" / "erf.png", title="classic")
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
