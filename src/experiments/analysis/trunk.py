"""The spatial trunk of a classifier: the part of the network whose output still has a spatial grid.

A classifier's logits depend on every pixel (global pooling / flatten + linear), so probing its
output says only "the whole image". The receptive field a user wants to see is that of the last
feature map before the head: ``CNN.encoder``, ``ResNet.stem + blocks``. The trunk is found from
one forward pass (no model-specific code): the direct children in call order, up to the last one
whose output is still a feature map larger than 1x1. A model whose output is already spatial (a
segmenter) is its own trunk; a wrapper whose one child computes its output (a zoo model's ``net``) is
looked into.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def _spatial(out: Any) -> bool:
    return isinstance(out, torch.Tensor) and out.dim() >= 3 and any(s > 1 for s in out.shape[2:])


def spatial_trunk(model: nn.Module, input_shape: Sequence[int]) -> tuple[nn.Module, str]:
    """(trunk, description): ``model`` itself if its output is spatial, else the chain of its children up to
    the last feature map, checked to reproduce that feature map; falls back to ``model`` when the network is
    not such a chain."""
    calls: list[tuple[str, nn.Module, Any]] = []
    handles = [
        child.register_forward_hook(lambda m, a, out, name=name: calls.append((name, m, out)))
        for name, child in model.named_children()
    ]
    flags = [(m, m.training) for m in model.modules()]
    x = torch.zeros(tuple(input_shape), dtype=next(model.parameters()).dtype)
    try:
        model.eval()
        with torch.no_grad():
            output = model(x)
        if _spatial(output):
            return model, type(model).__name__
        last = max((i for i, (_, _, out) in enumerate(calls) if _spatial(out)), default=None)
        if last is None and len(calls) == 1 and calls[0][2] is output:  # a wrapper (models/zoo.py's ``net``)
            name, child, _ = calls[0]
            trunk, where = spatial_trunk(child, input_shape)
            return trunk, f"{name}: {where}"
        if last is None:
            return model, type(model).__name__
        chain = calls[: last + 1]
        if len({name for name, _, _ in chain}) != len(chain):  # a child called twice: not a simple chain
            return model, type(model).__name__
        trunk = nn.Sequential(*(m for _, m, _ in chain))
        with torch.no_grad():
            same = torch.allclose(trunk(x), chain[-1][2])
        if not same:
            return model, type(model).__name__
        return trunk, " -> ".join(name for name, _, _ in chain)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag
