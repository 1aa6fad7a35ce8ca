"""Gradient flow: per-layer norms equal autograd's in true depth order; sigmoid vanishes where ReLU does not."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.diagnostics.gradients import GradientFlow, vanishing_ratio
from experiments.errors import ConfigError
from experiments.train import train
from experiments.validation import validate
from tests.diagnostics.tiny import TinyTask, batches, fit


class HeadFirst(nn.Module):
    """Registers its head before its trunk, so registration order is not depth order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2 * 6 * 6, 2)
        self.trunk = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.trunk(x)).flatten(1))


def test_norms_at_initialisation_equal_autograd_in_depth_order() -> None:
    torch.manual_seed(0)
    network = HeadFirst()
    reference = copy.deepcopy(network)
    data = batches()
    flow = GradientFlow(interval=1)
    fit(TinyTask(network), [flow], data, steps=2)

    nn.functional.cross_entropy(reference(data[0]), data[1]).backward()
    expected = [reference.trunk.weight.grad.norm().item(), reference.head.weight.grad.norm().item()]
    summary = flow.run_summary()
    assert summary["gradient_flow"]["layers"] == ["trunk", "head"]
    assert summary["gradient_flow"]["grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert summary["vanishing_ratio"] == pytest.approx(expected[0] / expected[1], rel=1e-5)
    ratio = reference.trunk.weight.grad.norm() / reference.trunk.weight.norm()
    assert summary["gradient_flow"]["grad_weight_ratio"][0] == pytest.approx(ratio.item(), rel=1e-5)
    assert flow.latest["step"] == 1  # interval 1: measured again after the first update, initial kept


def test_vanishing_ratio_is_undefined_without_a_last_gradient() -> None:
    assert vanishing_ratio([1.0, 4.0]) == 0.25
    assert vanishing_ratio([1.0, 0.0]) is None
    assert vanishing_ratio([1.0]) is None


def test_deep_sigmoid_net_vanishes_far_more_than_relu_at_initialisation(make_cfg, tmp_path: Path) -> None:
    """Glorot & Bengio (2010): with the standard init, sigmoid gradients shrink layer by layer towards the input."""
    deep_plain = ["model.stages=4", "model.convs_per_stage=2", "norm=none", "init=standard", "logger=csv",
                  "+trainer.max_steps=1", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]
    flows = {}
    for activation in ("sigmoid", "relu"):
        cfg = make_cfg([*deep_plain, f"activation={activation}"], run_dir=tmp_path / activation)
        train(cfg)
        flows[activation] = json.loads((tmp_path / activation / "metrics.json").read_text())

    sigmoid, relu = flows["sigmoid"], flows["relu"]
    layers = sigmoid["gradient_flow"]["layers"]
    assert len(layers) == 8 + 2 and layers[0] == "encoder.stages.0.convs.0.0" and layers[-1].startswith("classifier")
    assert relu["gradient_flow"]["layers"] == layers
    assert sigmoid["vanishing_ratio"] * 10 <= relu["vanishing_ratio"]
    norms = sigmoid["gradient_flow"]["grad_norm"]
    assert all(a < b for a, b in zip(norms, norms[1:], strict=False)), norms  # shrinking towards the input
    assert sigmoid["vanishing_ratio"] == pytest.approx(norms[0] / norms[-1])


@pytest.mark.parametrize("override", ["diagnostics.gradients.interval=0", "diagnostics.activations.interval=-5"])
def test_interval_below_one_is_a_config_error(make_cfg, override: str) -> None:
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        validate(make_cfg([override]))
