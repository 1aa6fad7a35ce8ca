"""Layer summary: shapes, parameter and FLOP totals, receptive-field columns, renderers."""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from experiments.analysis.receptive_field import receptive_fields
from experiments.analysis.summary import ModelSummary, format_count, summarize


class SmallNet(nn.Module):
    """Conv/BN/ReLU stack with a re-used ReLU, a residual add, a frozen layer and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=2, dilation=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)
        self.conv1.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.conv2(x) + x)
        x = self.relu(self.conv3(self.pool(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def reference_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape))
    return counter.get_total_flops()


def test_totals_match_torch() -> None:
    model = SmallNet()
    summary = summarize(model, (2, 3, 16, 16))
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in summary.rows) == summary.total_params
    assert summary.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary.non_trainable_params == model.conv1.weight.numel() + model.conv1.bias.numel()
    assert summary.total_flops == reference_flops(SmallNet(), (2, 3, 16, 16))
    assert sum(r.flops for r in summary.rows) == summary.total_flops


def test_conv_and_linear_flops_follow_flop_counter_convention() -> None:
    # FlopCounterMode: 2 FLOPs per multiply-add, bias not counted.
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
    s = summarize(conv, (1, 3, 16, 16))
    assert s.rows[0].output_shape == (1, 8, 8, 8)
    assert s.total_flops == 2 * 3 * 8 * 3 * 3 * 8 * 8
    grouped = summarize(nn.Conv2d(8, 8, 3, padding=1, groups=4), (1, 8, 4, 4))
    assert grouped.total_flops == 2 * (8 // 4) * 8 * 3 * 3 * 4 * 4
    linear = nn.Linear(20, 7)
    assert summarize(linear, (1, 20)).total_flops == 2 * 20 * 7
    assert summarize(linear, (3, 20)).total_flops == 3 * 2 * 20 * 7


def test_rows_shapes_and_shared_modules() -> None:
    model = SmallNet()
    summary = summarize(model, (1, 3, 16, 16))
    by_call = {(r.name, r.call_index): r for r in summary.rows}
    assert by_call[("conv1", 0)].output_shape == (1, 8, 16, 16)
    assert by_call[("pool", 0)].output_shape == (1, 8, 8, 8)
    assert by_call[("gap", 0)].output_shape == (1, 16, 1, 1)
    assert by_call[("fc", 0)].output_shape == (1, 10)
    relu_calls = [r for r in summary.rows if r.name == "relu"]
    assert [r.call_index for r in relu_calls] == [0, 1, 2]
    assert summary.output_shape == (1, 10)
    conv2 = by_call[("conv2", 0)]
    assert conv2.params == 8 * 8 * 9 and conv2.flops == 2 * 8 * 8 * 9 * 16 * 16
    assert by_call[("bn1", 0)].flops == 0


def test_stride_dilation_and_rf_columns() -> None:
    model = SmallNet()
    summary = summarize(model, (1, 3, 16, 16))
    by_name = {r.name: r for r in summary.rows if r.call_index == 0}
    assert (by_name["conv1"].rf, by_name["conv1"].stride) == (3, 1)
    assert by_name["conv2"].rf == 5
    assert (by_name["pool"].rf, by_name["pool"].stride) == (6, 2)
    conv3 = by_name["conv3"]
    assert (conv3.rf, conv3.stride, conv3.dilation) == (6 + 2 * 2 * 2, 2, 2)
    assert math.isinf(by_name["fc"].rf) and math.isinf(summary.rf)
    # consistent with receptive_fields()
    rf_rows = {r.name: r for r in receptive_fields(model, (1, 3, 16, 16))}
    assert rf_rows["conv3"].rf == conv3.rf and rf_rows["pool"].jump == by_name["pool"].stride


def test_training_mode_restored_and_stats_untouched() -> None:
    model = SmallNet().train()
    before = model.bn1.running_mean.clone()
    summarize(model, (2, 3, 16, 16))
    assert all(m.training for m in model.modules())
    assert torch.equal(model.bn1.running_mean, before)


def test_renderers() -> None:
    summary = summarize(SmallNet(), (1, 3, 32, 32))
    text = summary.to_text()
    assert f"{summary.total_params:,}" in text
    assert f"{summary.trainable_params:,}" in text
    assert f"{summary.total_flops:,}" in text
    assert format_count(summary.total_flops, "FLOPs") in text
    assert "global" in text and "conv3" in text
    widths = {len(line) for line in text.splitlines()[1:4:2]}  # the two rules around the header
    assert len(widths) == 1
    md = summary.to_markdown()
    assert md.startswith("| Layer |") and "| conv1 |" in md and "Total params" in md
    payload = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert payload["total_params"] == summary.total_params
    assert payload["total_flops"] == summary.total_flops
    assert payload["rf"] == "global"
    assert payload["rows"][0]["output_shape"] == [1, 8, 32, 32]
    assert str(summary) == text


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.relu(y) if y.mean() > 0 else y


def test_untraceable_model_still_summarised() -> None:
    summary = summarize(Untraceable(), (1, 3, 8, 8))
    assert isinstance(summary, ModelSummary)
    assert summary.rows[0].output_shape == (1, 4, 6, 6)
    assert summary.rows[0].rf is None and summary.rf is None
    assert summary.notes and "trace" in summary.notes[0]
    assert "Note:" in summary.to_text()
    json.dumps(summary.to_dict(), allow_nan=False)


def test_format_count() -> None:
    assert format_count(512) == "512"
    assert format_count(1_234_567) == "1.2 M"
    assert format_count(34_500_000, "FLOPs") == "34.5 MFLOPs"
    assert format_count(2.5e9, "FLOPs") == "2.5 GFLOPs"
