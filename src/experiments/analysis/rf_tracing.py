"""Tracing a model with torch.fx, and one recording pass that resolves run-time sizes.

Internal to :mod:`experiments.analysis.receptive_field`. The graph says which operations a tensor
goes through; the recording pass (:class:`torch.fx.Interpreter` on zeros, in eval mode, training
flags restored) adds what only a run knows: every tensor's shape and every other value, such as
``skip.shape[-2:]`` handed to ``F.interpolate(size=...)``. Tensors themselves are not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from experiments.errors import ReceptiveFieldError, TracingError

#: image sizes tried, in order, when the caller gives no input shape
GUESSED_SIZES = (32, 64, 224, 28, 96, 128, 256)


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self._leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self._leaf_types and isinstance(m, self._leaf_types):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, leaf_modules: Sequence[type[nn.Module]]) -> fx.GraphModule:
    """The model's fx graph; ``leaf_modules`` are kept as opaque calls instead of traced through."""
    tracer = _Tracer(tuple(leaf_modules))
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many different types (TraceError, TypeError, ...)
        raise TracingError(
            f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {exc}. "
            "The theoretical receptive field needs a symbolically traceable forward (no control "
            "flow on tensor values); untraceable submodules can be declared opaque with "
            "leaf_modules=(TheirClass,)."
        ) from exc
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


@dataclass(frozen=True)
class TensorInfo:
    """Shape of a tensor seen during the recording pass (tensors themselves are not kept)."""

    shape: tuple[int, ...]


def summarise(value: Any) -> Any:
    """A recorded value with every tensor replaced by its :class:`TensorInfo` (sizes become tuples)."""
    if isinstance(value, torch.Tensor):
        return TensorInfo(tuple(value.shape))
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, list):
        return [summarise(v) for v in value]
    if isinstance(value, tuple):  # includes named tuples such as torch.return_types.max
        return tuple(summarise(v) for v in value)
    if isinstance(value, dict):
        return {k: summarise(v) for k, v in value.items()}
    return value


def tensor_infos(value: Any) -> list[TensorInfo]:
    """Every tensor in a summarised value, depth first."""
    if isinstance(value, TensorInfo):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensor_infos(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensor_infos(v)]
    return []


class _Recorder(fx.Interpreter):
    """Runs the traced graph once and keeps shapes of tensors and values of everything else."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.meta: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.meta[n] = summarise(result)
        return result


class TrainingFlagsRestored:
    """Context manager: restores every submodule's ``training`` flag on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.flags = [(m, m.training) for m in model.modules()]

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.training = flag


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device of the model's tensors and the dtype of its first floating-point one (defaults if none)."""
    device, dtype = torch.device("cpu"), torch.get_default_dtype()
    for t in [*model.parameters(), *model.buffers()]:
        device = t.device
        if t.is_floating_point():
            return device, t.dtype
    return device, dtype


def _guess_input_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d)) and m.in_channels > 0:
            if isinstance(m, nn.Conv1d):
                return [(1, m.in_channels, s) for s in GUESSED_SIZES]
            return [(1, m.in_channels, s, s) for s in GUESSED_SIZES]
    return []


def record(
    gm: fx.GraphModule, model: nn.Module, input_shape: tuple[int, ...] | None
) -> tuple[dict[fx.Node, Any] | None, tuple[int, ...] | None]:
    """(summarised value of every node, input shape used) of one pass on zeros; (None, None) if none ran.

    Without ``input_shape`` the shape is guessed from the first convolution's ``in_channels`` and a few
    common image sizes; a failing guess is not an error, a failing given shape is.
    """
    device, dtype = model_device_dtype(model)
    candidates = [tuple(input_shape)] if input_shape is not None else _guess_input_shapes(model)
    last_exc: Exception | None = None
    for shape in candidates:
        recorder = _Recorder(gm)
        try:
            with TrainingFlagsRestored(model), torch.no_grad():
                gm.eval()
                recorder.run(torch.zeros(shape, device=device, dtype=dtype))
        except Exception as exc:  # a wrong guess of the input size fails in arbitrary ways
            last_exc = exc
            continue
        return recorder.meta, shape
    if input_shape is not None:
        raise ReceptiveFieldError(
            f"forward pass of the traced model on zeros{tuple(input_shape)} failed: {last_exc}"
        ) from last_exc
    return None, None
