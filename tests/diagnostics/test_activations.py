"""Activation statistics: the dead/saturated definitions, the hand-computed values, and hooks only when logging."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from experiments.build import build_network
from experiments.diagnostics.activations import (
    ActivationStats,
    activation_modules,
    dead_fraction,
    saturated_fraction,
)
from tests.diagnostics.tiny import TinyTask, batches, fit


def test_dead_units_are_channels_never_positive_over_the_batch() -> None:
    a = -torch.ones(2, 4, 2, 2)
    a[1, 2, 0, 1] = 0.5  # channel 2 fires once in the whole batch: alive
    a[:, 3] = 1.0
    a[0, 1] = 0.0  # zero is not positive: channel 1 stays dead
    assert dead_fraction(a).item() == pytest.approx(0.5)
    assert dead_fraction(torch.tensor([[0.0, 1.0, -1.0], [0.0, 0.0, -2.0]])).item() == pytest.approx(2 / 3)


def test_saturation_bands() -> None:
    assert saturated_fraction(torch.tensor([0.005, 0.5, 0.995, 0.98]), "sigmoid").item() == pytest.approx(0.5)
    assert saturated_fraction(torch.tensor([0.99, -0.985, 0.5, -0.97]), "tanh").item() == pytest.approx(0.5)


def test_identity_counts_as_activation_only_for_activation_identity(make_cfg) -> None:
    relu = activation_modules(build_network(make_cfg(["norm=none"])))  # norm=none builds Identity layers
    assert relu and all(isinstance(m, nn.ReLU) for m in relu.values())
    identity = activation_modules(build_network(make_cfg(["activation=identity"])))
    assert identity and all(type(m) is nn.Identity for m in identity.values())


class HookCounter(Callback):
    """Counts the forward hooks on a module during every training step (after the forward pass)."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.counts = module, []

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.counts.append(len(self.module._forward_hooks))


def test_statistics_match_hand_computation_and_hooks_live_only_on_logging_steps() -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 4 * 4, 2))
    reference = copy.deepcopy(network)
    data = batches()
    stats, counter = ActivationStats(interval=2), HookCounter(network[3])
    fit(TinyTask(network), [stats, counter], data, steps=4)

    assert counter.counts == [1, 0, 1, 0]
    assert not network[1]._forward_hooks and not network[3]._forward_hooks
    with torch.no_grad():
        s = reference[1](reference[0](data[0]))
        r = reference[3](reference[2](s))
    table = stats.run_summary()["activation_stats"]
    assert table["step"] == 0 and table["layers"] == ["1", "3"]
    assert table["mean"] == pytest.approx([s.mean().item(), r.mean().item()], rel=1e-5)
    assert table["std"] == pytest.approx([s.std().item(), r.std().item()], rel=1e-5)
    assert table["dead"] == [None, pytest.approx(dead_fraction(r).item())]
    assert table["saturated"] == [pytest.approx(saturated_fraction(s, "sigmoid").item()), None]
