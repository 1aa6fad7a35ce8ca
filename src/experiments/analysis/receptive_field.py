"""Theoretical receptive field of arbitrary image models: the public API.

The model is traced with :mod:`torch.fx` (:mod:`.rf_tracing`) and every tensor in the graph is
annotated, in graph (= execution) order (:mod:`.rf_propagate`), with three numbers per spatial axis
(H and W are tracked separately, so non-square kernels, strides and dilations are handled exactly):

``rf``
    size, in input pixels, of the region of the input that can influence one unit of the tensor;
``jump``
    distance, in input pixels, between two neighbouring units of the tensor (the cumulative
    stride); it becomes fractional after upsampling;
``start``
    centre of the receptive field of unit 0 in input-pixel coordinates (padding shifts it).

The per-layer arithmetic (convolution, pooling, transposed convolution, unpooling, resampling, the
union over paths that skips and shortcuts join) is in :mod:`.rf_state`; which operations are known, by
module class and function name, in :mod:`.rf_ops`; the rules for views, permutes and slices in
:mod:`.rf_layout`. Anything that mixes all spatial positions -- global / adaptive-to-1x1 pooling,
flatten, ``Linear`` over W, softmax or reductions over a spatial axis, attention -- makes the
receptive field **global**, represented as ``math.inf`` (rf and jump): independent of the input size
and absorbing.

Shapes and run-time values (e.g. ``F.interpolate(x, size=skip.shape[-2:])``) come from one forward
pass of :class:`torch.fx.Interpreter` on zeros. If no ``input_shape`` is given, one is guessed from the
first convolution's ``in_channels`` and a few common image sizes.

The effective receptive field (Luo et al. 2016), measured by the gradient, is in :mod:`.effective_rf`
and re-exported here: :func:`effective_receptive_field`, :class:`ERF`, :func:`save_erf_heatmap`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch.fx as fx
from torch import nn

from experiments.errors import ReceptiveFieldError, TracingError, UnsupportedOperationError

from .effective_rf import ERF, effective_receptive_field, save_erf_heatmap
from .rf_ops import ROW_KINDS
from .rf_propagate import Propagator
from .rf_state import GLOBAL_STATE, RFState, number
from .rf_tracing import record, tensor_infos, trace

__all__ = [
    "ERF",
    "LayerRF",
    "RFAnalysis",
    "ReceptiveFieldError",
    "TracingError",
    "UnsupportedOperationError",
    "analyze_receptive_field",
    "effective_receptive_field",
    "receptive_field",
    "receptive_fields",
    "save_erf_heatmap",
]

GLOBAL_RF = math.inf
"""Receptive field (and jump) of a unit that depends on every input pixel."""


@dataclass(frozen=True)
class LayerRF:
    """Receptive field after one layer (one call of a module or one functional op).

    ``rf`` and ``jump`` are the maxima over the H and W axes (equal for square kernels); the
    per-axis values are in ``rf_hw`` / ``jump_hw``.  Global units have ``rf = jump = math.inf``
    and ``start_hw = (nan, nan)``.  ``start_hw`` is the centre of output unit (0, 0)'s receptive
    field in input pixels (negative with padding).  ``dilation`` is the layer's own dilation (1 for
    layers without one); ``call_index`` counts re-uses of the same module.  ``name`` is the module's
    qualified name, or the fx node name for functional ops.  ``kind`` is one of ``conv``,
    ``conv_transpose``, ``pool``, ``adaptive_pool``, ``global_pool``, ``upsample``, ``unpool``,
    ``pixel_shuffle``, ``pixel_unshuffle``, ``flatten``, ``linear``, ``attention`` for layer rows,
    and ``pointwise``, ``slice``, ``pad``, ``reshape``, ``permute``, ``global``, ``input`` for the
    other nodes in :attr:`RFAnalysis.nodes`.
    """

    name: str
    kind: str
    type: str
    rf: int | float
    jump: int | float
    dilation: int
    rf_hw: tuple[int | float, int | float]
    jump_hw: tuple[int | float, int | float]
    start_hw: tuple[float, float]
    output_shape: tuple[int, ...] | None = None
    call_index: int = 0
    node: str = ""

    @property
    def is_global(self) -> bool:
        return math.isinf(self.rf)


@dataclass
class RFAnalysis:
    """Everything the fx propagation found.

    ``rows``: conv / pool / upsample / linear-like layers in execution order (module calls and
    their functional equivalents).  ``nodes``: every tensor-valued fx node by node name.
    ``module_calls``: result for the output of each module call, keyed ``"fqn"`` for the first
    call and ``"fqn@k"`` for the k-th re-use (also for modules fx traced through).
    ``input_shape``: the shape used for the recording pass (None if no pass could be run).
    """

    rows: list[LayerRF]
    output: LayerRF
    nodes: dict[str, LayerRF]
    module_calls: dict[str, LayerRF]
    input_shape: tuple[int, ...] | None

    @property
    def rf(self) -> int | float:
        return self.output.rf


def _layer(
    name: str,
    kind: str,
    type_name: str,
    state: RFState,
    dilation: int,
    shape: tuple[int, ...] | None,
    call_index: int = 0,
    node: str = "",
) -> LayerRF:
    if state.is_global:
        rf_hw: tuple[int | float, int | float] = (GLOBAL_RF, GLOBAL_RF)
        jump_hw: tuple[int | float, int | float] = (GLOBAL_RF, GLOBAL_RF)
        start_hw = (math.nan, math.nan)
    else:
        rf_hw = (number(state.rf[0]), number(state.rf[1]))
        jump_hw = (number(state.jump[0]), number(state.jump[1]))
        start_hw = (float(state.start[0]), float(state.start[1]))
    return LayerRF(
        name=name,
        kind=kind,
        type=type_name,
        rf=max(rf_hw),
        jump=max(jump_hw),
        dilation=dilation,
        rf_hw=rf_hw,
        jump_hw=jump_hw,
        start_hw=start_hw,
        output_shape=shape,
        call_index=call_index,
        node=node,
    )


def analyze_receptive_field(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    leaf_modules: Sequence[type[nn.Module]] = (),
) -> RFAnalysis:
    """Trace ``model`` with torch.fx and propagate receptive fields through every node.

    ``input_shape`` (N, C, H, W) is used for one recording pass on zeros (in eval mode, training
    flags restored) that resolves run-time sizes; it is guessed when omitted.  The model is not
    modified.  Raises :class:`TracingError` or :class:`UnsupportedOperationError`.
    """
    gm = trace(model, leaf_modules)
    meta, used_shape = record(gm, model, tuple(input_shape) if input_shape is not None else None)
    prop = Propagator(gm, meta)
    prop.run()

    rows: list[LayerRF] = []
    nodes: dict[str, LayerRF] = {}
    last_in_scope: dict[str, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op == "output":
            continue
        step = prop.steps[node]
        for key in node.meta.get("nn_module_stack", {}):
            if step.state is not None:
                last_in_scope[key] = node
        if step.state is None:
            continue
        if node.op == "call_module":
            name, type_name = str(node.target), type(prop.modules[str(node.target)]).__name__
        else:
            target_name = (
                node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
            )
            name, type_name = node.name, str(target_name)
        shape = prop.shape_of(node)
        rec = _layer(
            name,
            step.kind,
            type_name,
            step.state,
            step.dilation,
            shape,
            prop.node_call.get(node, 0),
            node.name,
        )
        nodes[node.name] = rec
        if step.kind in ROW_KINDS and node.op in ("call_module", "call_function", "call_method"):
            rows.append(rec)

    module_calls = {}
    for key, node in last_in_scope.items():
        module_calls[key] = nodes[node.name]

    out_state = prop.output_state if prop.output_state is not None else GLOBAL_STATE
    output_node = next(n for n in gm.graph.nodes if n.op == "output")
    out_shape = None
    if meta is not None and output_node in meta:
        infos = tensor_infos(meta[output_node])
        out_shape = infos[0].shape if infos else None
    output = _layer("output", "output", "output", out_state, 1, out_shape, node="output")
    return RFAnalysis(rows, output, nodes, module_calls, used_shape)


def receptive_fields(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    leaf_modules: Sequence[type[nn.Module]] = (),
) -> list[LayerRF]:
    """One :class:`LayerRF` per conv / pool / upsample / linear-like layer, in execution order.

    Rows are produced for leaf-module calls and for their functional equivalents
    (``F.max_pool2d``, ``F.interpolate``, ``x.mean((2, 3))`` ...; named by fx node name).
    """
    return analyze_receptive_field(model, input_shape, leaf_modules=leaf_modules).rows


def receptive_field(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    leaf_modules: Sequence[type[nn.Module]] = (),
) -> int | float:
    """Theoretical receptive field of the model's output (max over H/W; ``math.inf`` if global).

    For tuple / dict outputs it is the union over all output tensors.  Receptive fields are per
    spatial position over all channels, so channel-selective rearrangements (``pixel_unshuffle``
    followed by ``pixel_shuffle``) are over-estimated.
    """
    return analyze_receptive_field(model, input_shape, leaf_modules=leaf_modules).rf
