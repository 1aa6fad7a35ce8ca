"""Normalisation choice shared by all models: batch norm or nothing (the classic plain nets)."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "none")


def norm2d(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer; ``none`` gives Identity so the layer list keeps one shape."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {list(NORMS)}")


def norm1d(kind: str, features: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {list(NORMS)}")
