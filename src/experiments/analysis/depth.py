"""Depth order of layers = the order of their first call in a forward pass.

Registration order (``named_modules``) is not depth order in general: a model may build its head
before its trunk, or call a skip branch after the layers registered after it. Gradient-flow plots
and the ``vanishing_ratio`` (first layer / last layer) are only meaningful in true depth order, so
it is recorded from one real forward pass with one-shot pre-hooks that are removed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

#: layers whose gradient flow is tracked: every convolution and fully connected layer
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
)


def weighted_layers(network: nn.Module) -> dict[str, nn.Module]:
    """Conv/linear layers with a trainable weight, by qualified name (registration order)."""
    return {
        name: m for name, m in network.named_modules()
        if isinstance(m, WEIGHTED_LAYERS) and getattr(m, "weight", None) is not None and m.weight.requires_grad
    }


def parameter_owners(network: nn.Module) -> dict[str, nn.Module]:
    """Every module that owns trainable parameters directly (conv, linear, norm, PReLU ...), by name."""
    return {
        name: m for name, m in network.named_modules()
        if any(p.requires_grad for p in m.parameters(recurse=False))
    }


class CallOrder:
    """Records the first-call order of ``modules`` during the next forward pass, then removes its hooks."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.registered = list(modules)
        self.seen: list[str] = []
        self._handles = [m.register_forward_pre_hook(self._hook_for(name)) for name, m in modules.items()]

    def _hook_for(self, name: str) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            if name not in self.seen:
                self.seen.append(name)

        return hook

    def finish(self) -> list[str]:
        """Names in depth order; modules that never ran keep their registration order at the end."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return self.seen + [n for n in self.registered if n not in self.seen]
