"""Activation factories.

A factory is a callable ``factory(channels) -> nn.Module`` that builds a fresh module each time a
model asks for one, plus two facts the model needs to know about it:

* ``width_multiplier`` – how many times more channels the preceding conv/linear must produce
  (Maxout with k pieces takes the max over groups of k, so it needs k x the channels);
* ``gain`` – the ``nn.init.calculate_gain`` value used to initialise the preceding layer, so that the
  sigmoid-vs-ReLU ablation measures the activation and not a mismatched initialisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013): the max over each group of ``pieces`` consecutive channels.

    The layer before it produces ``pieces * C`` channels; the output has ``C``. Works for (N, kC) and
    (N, kC, H, W) inputs alike, so it can follow a Linear or a Conv.
    """

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        if pieces < 2:
            raise ValueError(f"Maxout needs pieces >= 2, got {pieces}")
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch.fx traces this for the receptive-field analysis, and a traced x is a Proxy: no Python
        # branching on its sizes, and ``unflatten`` instead of ``view(n, c // k, k, *x.shape[2:])``.
        if not isinstance(x, torch.fx.Proxy) and x.shape[1] % self.pieces:
            c = x.shape[1]
            raise ValueError(f"Maxout with {self.pieces} pieces got {c} channels, not a multiple of {self.pieces}")
        return x.unflatten(1, (-1, self.pieces)).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


@dataclass(frozen=True)
class _ActivationSpec:
    """How to build one named activation and which init gain suits it."""

    build: Callable[[int, dict[str, Any]], nn.Module]
    gain: Callable[[dict[str, Any]], float]


def _gain(nonlinearity: str, param_key: str | None = None, default: float | None = None):
    def gain(kwargs: dict[str, Any]) -> float:
        param = kwargs.get(param_key, default) if param_key else None
        return nn.init.calculate_gain(nonlinearity, param)

    return gain


# name -> how to build it. Adding an activation is one entry here plus one YAML file.
ACTIVATIONS: dict[str, _ActivationSpec] = {
    "relu": _ActivationSpec(lambda c, kw: nn.ReLU(inplace=True), _gain("relu")),
    "leaky_relu": _ActivationSpec(
        lambda c, kw: nn.LeakyReLU(kw.get("negative_slope", 0.01), inplace=True),
        _gain("leaky_relu", "negative_slope", 0.01),
    ),
    "sigmoid": _ActivationSpec(lambda c, kw: nn.Sigmoid(), _gain("sigmoid")),
    "tanh": _ActivationSpec(lambda c, kw: nn.Tanh(), _gain("tanh")),
    "elu": _ActivationSpec(lambda c, kw: nn.ELU(kw.get("alpha", 1.0)), _gain("relu")),
    "gelu": _ActivationSpec(lambda c, kw: nn.GELU(), _gain("relu")),
    "prelu": _ActivationSpec(
        lambda c, kw: nn.PReLU(c if kw.get("per_channel", True) else 1, kw.get("init", 0.25)),
        _gain("leaky_relu", "init", 0.25),
    ),
    "identity": _ActivationSpec(lambda c, kw: nn.Identity(), _gain("linear")),
    # Maxout is piecewise linear; the max of k unit-variance pieces keeps roughly unit scale.
    "maxout": _ActivationSpec(lambda c, kw: Maxout(kw.get("pieces", 2)), _gain("linear")),
}


@dataclass(frozen=True)
class ActivationFactory:
    """Builds fresh activation modules of one kind; see the module docstring."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.name!r}; choose one of {sorted(ACTIVATIONS)}")
        self(1 * self.width_multiplier)  # build once so bad arguments fail here, not mid-model

    @property
    def width_multiplier(self) -> int:
        return int(self.kwargs.get("pieces", 2)) if self.name == "maxout" else 1

    @property
    def gain(self) -> float:
        return ACTIVATIONS[self.name].gain(self.kwargs)

    def __call__(self, channels: int) -> nn.Module:
        return ACTIVATIONS[self.name].build(channels, self.kwargs)


def activation_factory(name: str, **kwargs: Any) -> ActivationFactory:
    """Hydra target of the ``activation`` group: ``activation_factory(name="leaky_relu", negative_slope=0.1)``."""
    return ActivationFactory(name, dict(kwargs))
