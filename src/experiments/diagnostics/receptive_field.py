"""Theoretical and effective receptive fields of arbitrary image models.

Theoretical receptive field
---------------------------
The model is traced with :mod:`torch.fx` and every tensor in the graph is annotated, in graph
(= execution) order, with three numbers per spatial axis (H and W are tracked separately, so
non-square kernels, strides and dilations are handled exactly):

``rf``
    size, in input pixels, of the region of the input that can influence one unit of the tensor;
``jump``
    distance, in input pixels, between two neighbouring units of the tensor (the cumulative
    stride); it becomes fractional after upsampling;
``start``
    centre of the receptive field of unit 0 in input-pixel coordinates (padding shifts it).

Layer rules (``j`` is the input jump, ``k``/``s``/``p``/``d`` kernel, stride, left padding, dilation):

* convolution / pooling: ``rf += (k-1)*d*j``, ``start += ((k-1)*d/2 - p)*j``, ``jump = j*s``;
* transposed convolution: ``jump = j/s``, ``rf += floor((k-1)*d/s)*j``,
  ``start += (p - (k-1)*d/2)/s*j``.  Output unit ``o`` reads the input units ``i`` with
  ``i*s = o + p - t*d`` for taps ``t``; at most ``floor((k-1)*d/s) + 1`` consecutive input
  units satisfy this, so the formula is exact for the worst-placed output unit.  The often-quoted
  "continuous" form ``rf += (k-1)*d*jump_out`` over-counts by a fraction of ``j`` (for ``k = s = 2``
  it claims half an input unit of growth that does not exist);
* upsampling by a factor ``f`` (``nn.Upsample``, ``F.interpolate``, ``PixelShuffle``,
  ``MaxUnpool``): ``jump = j/f``; ``rf`` grows by the number of extra interpolation taps times ``j``
  (nearest 0, (bi)linear 1, bicubic 3); ``start`` follows the ``align_corners=False`` coordinate
  mapping.  ``size=`` arguments are turned into factors from the recorded shapes;
* elementwise / multi-input ops (``+``, ``*``, ``torch.cat`` on channels, activations, norms,
  dropout, identity ...): the result is the *union* of the input receptive fields.  When the paths
  are centred on the same pixel (any "same"-padded network: ResNet shortcuts, FCN skips) this is
  exactly the maximum over paths; when paths are offset (valid convolutions, crops) the union is
  what the network really sees, which can exceed the maximum;
* strided slicing ``x[:, :, a::t, b::t]``: ``jump *= t`` and ``start += a*j``; ``F.pad`` shifts
  ``start``;
* anything that mixes all spatial positions -- global / adaptive-to-1x1 pooling, flatten,
  ``Linear``, softmax or reductions over a spatial axis, attention -- makes the receptive field
  **global**, represented as ``math.inf`` (rf and jump).  This is independent of the input size and
  absorbing: everything computed from a global tensor is global.  Adaptive pooling to a larger
  output is modelled as an exact window when the recorded shapes allow it.

Normalisation layers are treated as pointwise (their statistics are constants in eval mode, the
usual convention in receptive-field analysis).  1-D convolutions/pools act on the last axis.
The position of the H and W dimensions is tracked through ``permute``/``transpose``/``unsqueeze``
and reductions, so channels-last blocks (``x.permute(0, 2, 3, 1)`` -> ``LayerNorm`` -> ``Linear``)
are pointwise, while a ``Linear`` over W is global; convolutions and pools require (..., H, W).
Unknown leaf modules (and unknown functions) are assumed pointwise when the recorded shapes show
that they keep the spatial size; otherwise :class:`UnsupportedOperationError` names them.

Shapes and run-time values (e.g. ``F.interpolate(x, size=skip.shape[-2:])``) come from one forward
pass of :class:`torch.fx.Interpreter` on zeros.  If no ``input_shape`` is given, one is guessed
from the first convolution's ``in_channels`` and a few common image sizes.

Effective receptive field
-------------------------
:func:`effective_receptive_field` measures the gradient of one output unit with respect to the
input (Luo et al., 2016, "Understanding the Effective Receptive Field in Deep CNNs").  The bounding
box of its support is the receptive field the network actually has for that unit; averaged over a
few random inputs (so that ReLU / max-pool gating does not hide an edge) it equals the theoretical
value clipped to the image, which makes it a test oracle for the analysis.  It can be smaller where
the theory is a worst case over positions (transposed convolutions with ``s`` not dividing
``(k-1)*d``, non-integer resampling).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.fx as fx
from torch import nn

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


class ReceptiveFieldError(RuntimeError):
    """Base class of the errors raised by the theoretical analysis."""


class TracingError(ReceptiveFieldError):
    """``torch.fx`` could not trace the model (data-dependent control flow, unsupported Python)."""


class UnsupportedOperationError(ReceptiveFieldError):
    """An operation changes the spatial layout in a way the analysis cannot model."""


# ----------------------------------------------------------------------------------------------
# Internal receptive-field state
# ----------------------------------------------------------------------------------------------

_ONE = Fraction(1)
_ZERO = Fraction(0)
_Pair = tuple[Fraction, Fraction]


@dataclass(frozen=True)
class _RF:
    """Receptive field of one tensor.  Fractions keep fractional jumps exact.

    Per-axis tuples are indexed (H, W); ``axes`` holds the (negative) tensor dimensions that
    currently carry H and W -- (-2, -1) for NCHW, (-3, -2) after a channels-last permute.
    """

    rf: _Pair = (_ONE, _ONE)
    jump: _Pair = (_ONE, _ONE)
    start: _Pair = (_ZERO, _ZERO)
    is_global: bool = False
    axes: tuple[int, int] = (-2, -1)


_GLOBAL = _RF(is_global=True)


@dataclass(frozen=True)
class _TensorInfo:
    """Shape of a tensor seen during the recording pass (tensors themselves are not kept)."""

    shape: tuple[int, ...]


def _frac(value: Any) -> Fraction:
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(value).limit_denominator(1_000_000)
    return Fraction(int(value))


def _hw(value: Any, nd: int, neutral: Any) -> tuple[Any, Any]:
    """Expand an int / 1-tuple / 2-tuple layer argument to an (H, W) pair.

    1-D operations act on the last (W) axis and leave H untouched (``neutral``).
    """
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value,) * max(nd, 1)
    if nd == 1:
        return (neutral, vals[-1])
    if len(vals) == 1:
        vals = vals * 2
    return (vals[-2], vals[-1])


def _make(st: _RF, rf: list[Fraction], jump: list[Fraction], start: list[Fraction]) -> _RF:
    return _RF((rf[0], rf[1]), (jump[0], jump[1]), (start[0], start[1]), False, st.axes)


def _kernel(st: _RF, k: Sequence[Any], s: Sequence[Any], p: Sequence[Any], d: Sequence[Any]) -> _RF:
    """Convolution / pooling window: rf += (k-1)*d*j, start += ((k-1)*d/2 - p)*j, jump *= s."""
    if st.is_global:
        return st
    rf, jump, start = [], [], []
    for i in range(2):
        ki, si, pi, di = _frac(k[i]), _frac(s[i]), _frac(p[i]), _frac(d[i])
        j = st.jump[i]
        rf.append(st.rf[i] + (ki - 1) * di * j)
        start.append(st.start[i] + ((ki - 1) * di / 2 - pi) * j)
        jump.append(j * si)
    return _make(st, rf, jump, start)


def _transposed(
    st: _RF, k: Sequence[Any], s: Sequence[Any], p: Sequence[Any], d: Sequence[Any], grow: bool = True
) -> _RF:
    """Transposed convolution (``grow``) or max-unpooling (no growth); see the module docstring."""
    if st.is_global:
        return st
    rf, jump, start = [], [], []
    for i in range(2):
        ki, si, pi, di = int(k[i]), int(s[i]), _frac(p[i]), int(d[i])
        j = st.jump[i]
        extra = ((ki - 1) * di) // si if grow else 0
        rf.append(st.rf[i] + extra * j)
        start.append(st.start[i] + (pi - Fraction((ki - 1) * di, 2)) / si * j)
        jump.append(j / si)
    return _make(st, rf, jump, start)


def _resample(st: _RF, factor: Sequence[Any], taps: Sequence[int], align_corners: bool = False) -> _RF:
    """Resampling by ``factor`` per axis; ``taps`` = extra input units read per output unit."""
    if st.is_global:
        return st
    rf, jump, start = [], [], []
    for i in range(2):
        f = _frac(factor[i])
        if f <= 0:
            raise UnsupportedOperationError(f"non-positive resampling factor {factor[i]}")
        j = st.jump[i]
        if f == 1:
            rf.append(st.rf[i])
            jump.append(j)
            start.append(st.start[i])
            continue
        rf.append(st.rf[i] + taps[i] * j)
        jump.append(j / f)
        start.append(st.start[i] if align_corners else st.start[i] + (1 / (2 * f) - Fraction(1, 2)) * j)
    return _make(st, rf, jump, start)


def _shift(st: _RF, offset: Sequence[Any], step: Sequence[Any] = (1, 1)) -> _RF:
    """Crop / pad / strided slice: output unit 0 is input unit ``offset``; jump *= step."""
    if st.is_global:
        return st
    start = [st.start[i] + _frac(offset[i]) * st.jump[i] for i in range(2)]
    jump = [st.jump[i] * _frac(step[i]) for i in range(2)]
    return _make(st, list(st.rf), jump, start)


def _moved(st: _RF, axes: Sequence[int]) -> _RF:
    """Same receptive field, spatial axes now at the (negative) tensor dimensions ``axes``."""
    if st.is_global:
        return st
    return replace(st, axes=(int(axes[0]), int(axes[1])))


def _union(states: Sequence[_RF]) -> _RF:
    """Receptive field of a unit computed elementwise from several tensors.

    The regions of all inputs are merged (their union's bounding interval per axis); for
    centred paths this is the maximum rf.  The finest jump is kept.
    """
    if len(states) == 1:
        return states[0]
    if any(s.is_global for s in states):
        return _GLOBAL
    if len({s.axes for s in states}) > 1:
        raise UnsupportedOperationError("combines tensors whose spatial axes are in different positions")
    rf, jump, start = [], [], []
    for i in range(2):
        lo = min(s.start[i] - (s.rf[i] - 1) / 2 for s in states)
        hi = max(s.start[i] + (s.rf[i] - 1) / 2 for s in states)
        rf.append(hi - lo + 1)
        start.append((lo + hi) / 2)
        jump.append(min(s.jump[i] for s in states))
    return _make(states[0], rf, jump, start)


def _number(x: Fraction) -> int | float:
    return int(x) if x.denominator == 1 else float(x)


# ----------------------------------------------------------------------------------------------
# Public result types
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Tracing and the recording pass
# ----------------------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self._leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self._leaf_types and isinstance(m, self._leaf_types):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _trace(model: nn.Module, leaf_modules: Sequence[type[nn.Module]]) -> fx.GraphModule:
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


def _summarise(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _TensorInfo(tuple(value.shape))
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, list):
        return [_summarise(v) for v in value]
    if isinstance(value, tuple):  # includes named tuples such as torch.return_types.max
        return tuple(_summarise(v) for v in value)
    if isinstance(value, dict):
        return {k: _summarise(v) for k, v in value.items()}
    return value


def _tensor_infos(value: Any) -> list[_TensorInfo]:
    if isinstance(value, _TensorInfo):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensor_infos(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensor_infos(v)]
    return []


class _Recorder(fx.Interpreter):
    """Runs the traced graph once and keeps shapes of tensors and values of everything else."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.meta: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.meta[n] = _summarise(result)
        return result


class _TrainingFlagsRestored:
    """Context manager: restores every submodule's ``training`` flag on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.flags = [(m, m.training) for m in model.modules()]

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.training = flag


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    device, dtype = torch.device("cpu"), torch.get_default_dtype()
    for t in [*model.parameters(), *model.buffers()]:
        device = t.device
        if t.is_floating_point():
            return device, t.dtype
    return device, dtype


def _guess_input_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d)) and m.in_channels > 0:
            sizes = (32, 64, 224, 28, 96, 128, 256)
            if isinstance(m, nn.Conv1d):
                return [(1, m.in_channels, s) for s in sizes]
            return [(1, m.in_channels, s, s) for s in sizes]
    return []


def _record(
    gm: fx.GraphModule, model: nn.Module, input_shape: tuple[int, ...] | None
) -> tuple[dict[fx.Node, Any] | None, tuple[int, ...] | None]:
    device, dtype = _model_device_dtype(model)
    candidates = [tuple(input_shape)] if input_shape is not None else _guess_input_shapes(model)
    last_exc: Exception | None = None
    for shape in candidates:
        recorder = _Recorder(gm)
        try:
            with _TrainingFlagsRestored(model), torch.no_grad():
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


# ----------------------------------------------------------------------------------------------
# Operation catalogue
# ----------------------------------------------------------------------------------------------

_ROW_KINDS = frozenset(
    {
        "conv",
        "conv_transpose",
        "pool",
        "adaptive_pool",
        "global_pool",
        "upsample",
        "unpool",
        "pixel_shuffle",
        "pixel_unshuffle",
        "flatten",
        "linear",
        "attention",
    }
)

_POINTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Threshold,
    nn.LogSigmoid,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Softmax2d,
    nn.ChannelShuffle,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.modules.dropout._DropoutNd,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

_PAD_MODULES: tuple[type[nn.Module], ...] = tuple(
    getattr(nn.modules.padding, name)
    for name in ("_ConstantPadNd", "_ReflectionPadNd", "_ReplicationPadNd", "_CircularPadNd")
    if hasattr(nn.modules.padding, name)
)

_GLOBAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)

_UNSUPPORTED_3D: tuple[type[nn.Module], ...] = (
    nn.Conv3d,
    nn.ConvTranspose3d,
    nn.MaxPool3d,
    nn.AvgPool3d,
    nn.LPPool3d if hasattr(nn, "LPPool3d") else nn.MaxPool3d,
    nn.MaxUnpool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_POINTWISE_NAMES = _words(
    """
    add sub subtract rsub mul multiply div divide true_divide truediv floordiv floor_divide mod remainder
    fmod pow neg negative pos abs absolute and_ or_ xor invert iadd isub imul itruediv ifloordiv
    eq ne lt le gt ge logical_and logical_or logical_not logical_xor bitwise_and bitwise_or
    relu relu_ relu6 elu elu_ selu celu gelu silu mish leaky_relu leaky_relu_ prelu rrelu hardtanh
    hardtanh_ hardswish hardsigmoid sigmoid sigmoid_ tanh tanh_ softplus softsign tanhshrink
    threshold threshold_ logsigmoid hardshrink softshrink
    dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout
    batch_norm instance_norm group_norm layer_norm local_response_norm rms_norm
    clamp clamp_ clip clamp_min clamp_max where maximum minimum fmax fmin exp exp_ log log_ log1p
    expm1 sqrt rsqrt square sign erf lerp addcmul addcdiv sin cos reciprocal floor ceil round trunc
    frac nan_to_num masked_fill masked_fill_ add_ sub_ mul_ div_ pow_ abs_ neg_ zero_ fill_
    contiguous clone detach detach_ float double half bfloat16 to type type_as cpu cuda
    requires_grad_ channel_shuffle native_channel_shuffle zeros_like ones_like empty_like full_like
    rand_like randn_like sigmoid_ bernoulli bernoulli_ copy_
    """
)

_META_METHODS = _words(
    "size dim numel ndimension nelement stride data_ptr element_size get_device is_contiguous "
    "is_floating_point"
)
_META_ATTRS = _words("shape ndim dtype device is_cuda requires_grad layout is_sparse")

_REDUCTIONS = _words(
    "mean sum amax amin max min std var norm logsumexp prod median nansum nanmean argmax argmin "
    "all any count_nonzero std_mean var_mean"
)
_DIM_GLOBAL = _words("softmax log_softmax softmin cumsum cumprod cummax cummin normalize")
_VIEWS = _words(
    "view reshape view_as reshape_as squeeze unsqueeze expand expand_as repeat unflatten squeeze_ unsqueeze_"
)
_PERMUTES = _words("permute transpose swapaxes swapdims movedim moveaxis")

_POOL_FUNCTIONS = _words(
    "max_pool1d max_pool2d max_pool1d_with_indices max_pool2d_with_indices avg_pool1d avg_pool2d "
    "lp_pool1d lp_pool2d"
)
_INTERP_TAPS = {"nearest": 0, "nearest-exact": 0, "linear": 1, "bilinear": 1, "trilinear": 1, "bicubic": 3}


class _Step(NamedTuple):
    state: _RF | None
    kind: str = "pointwise"
    dilation: int = 1


def _pool_params(m: nn.Module) -> tuple[Any, Any, Any, Any]:
    k = m.kernel_size  # type: ignore[attr-defined]
    s = getattr(m, "stride", None) or k
    p = getattr(m, "padding", 0)
    d = getattr(m, "dilation", 1)
    return k, s, p, d


def _conv_padding(padding: Any, k: tuple[Any, Any], d: tuple[Any, Any], nd: int) -> tuple[Any, Any]:
    if padding == "valid":
        return (0, 0)
    if padding == "same":  # PyTorch puts the odd extra pixel on the right/bottom
        return tuple((int(d[i]) * (int(k[i]) - 1)) // 2 for i in range(2))  # type: ignore[return-value]
    return _hw(padding, nd, 0)


def _max_int(pair: tuple[Any, Any]) -> int:
    return int(max(int(pair[0]), int(pair[1])))


class _Propagator:
    """Walks the fx graph once, computing an :class:`_RF` for every tensor-valued node."""

    def __init__(self, gm: fx.GraphModule, meta: dict[fx.Node, Any] | None) -> None:
        self.gm = gm
        self.meta = meta
        self.modules = dict(gm.named_modules())
        self.states: dict[fx.Node, _RF | None] = {}
        self.steps: dict[fx.Node, _Step] = {}
        self.calls: dict[str, int] = {}
        self.node_call: dict[fx.Node, int] = {}
        self.seen_input = False
        self.output_state: _RF | None = None
        self.current: fx.Node | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _where(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"module '{node.target}' ({type(self.modules[str(node.target)]).__name__})"
        name = getattr(node.target, "__name__", str(node.target))
        return f"{node.op} '{name}' (fx node '{node.name}')"

    def _unsupported(self, node: fx.Node, why: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(f"{self._where(node)}: {why}")

    def _value(self, arg: Any) -> Any:
        """Concrete value of an argument; fx nodes are looked up in the recording pass."""
        if isinstance(arg, fx.Node):
            if self.meta is not None and arg in self.meta:
                return self.meta[arg]
            if arg.op == "get_attr":
                obj: Any = self.gm
                for part in str(arg.target).split("."):
                    obj = getattr(obj, part)
                return _summarise(obj)
            assert self.current is not None
            raise self._unsupported(
                self.current,
                f"argument '{arg.name}' is only known at run time; pass input_shape so that a "
                "recording pass can resolve it",
            )
        if isinstance(arg, (tuple, list)):
            return type(arg)(self._value(a) for a in arg)
        return arg

    def _shape(self, arg: Any) -> tuple[int, ...] | None:
        if isinstance(arg, fx.Node) and self.meta is not None and arg in self.meta:
            infos = _tensor_infos(self.meta[arg])
            return infos[0].shape if infos else None
        return None

    def _ndim(self, arg: Any, default: int = 4) -> int:
        shape = self._shape(arg)
        return len(shape) if shape is not None else default

    @staticmethod
    def _pos(st: _RF, ndim: int) -> tuple[int, int]:
        """Non-negative positions of the H and W dimensions in a tensor of rank ``ndim``."""
        return (ndim + st.axes[0], ndim + st.axes[1])

    def _dims(self, dim: Any, ndim: int) -> list[int] | None:
        """Normalised dimension list of a ``dim`` argument; None means "all dimensions"."""
        dim = self._value(dim)
        if dim is None:
            return None
        return [int(d) % ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]

    def _touches_spatial(self, dim: Any, ndim: int, st: _RF) -> bool:
        dims = self._dims(dim, ndim)
        return dims is None or bool(set(dims) & set(self._pos(st, ndim)))

    def _std(self, node: fx.Node, st: _RF) -> _RF:
        """State in (..., H, W) layout, as convolutions, pools and resampling expect it."""
        if st.is_global or st.axes == (-2, -1):
            return st
        if st.axes == (-1, -2):  # a transposed image: swap the per-axis values instead
            return _RF(st.rf[::-1], st.jump[::-1], st.start[::-1])  # type: ignore[arg-type]
        raise self._unsupported(node, f"expects (..., H, W) input but the spatial axes are at {st.axes}")

    @staticmethod
    def _bind(node: fx.Node, names: Sequence[str], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        out = dict(defaults or {})
        out.update(zip(names, node.args, strict=False))
        out.update(node.kwargs)
        return out

    # -- driver ------------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.current = node
            if node.op == "output":
                outs = [self.states.get(n) for n in node.all_input_nodes]
                outs = [s for s in outs if s is not None]
                try:
                    self.output_state = _union(outs) if outs else None
                except UnsupportedOperationError:  # several outputs in different layouts
                    self.output_state = max(outs, key=lambda s: max(s.rf))
                continue
            if node.op == "call_module":
                idx = self.calls.get(str(node.target), 0)
                self.calls[str(node.target)] = idx + 1
                self.node_call[node] = idx
            step = self._step(node)
            self.steps[node] = step
            self.states[node] = step.state

    def _is_meta_only(self, node: fx.Node) -> bool:
        """Node whose value is not a tensor (sizes, dtypes ...): it carries no receptive field."""
        if self.meta is not None and node in self.meta:
            return not _tensor_infos(self.meta[node])
        if node.op == "call_method" and node.target in _META_METHODS:
            return True
        if node.op == "call_function" and node.target is getattr and len(node.args) > 1:
            return node.args[1] in _META_ATTRS
        return node.op == "call_function" and node.target is len

    def _step(self, node: fx.Node) -> _Step:
        if node.op == "placeholder":
            if self.seen_input:
                return _Step(None, "input")
            self.seen_input = True
            return _Step(_RF(), "input")
        if node.op == "get_attr" or self._is_meta_only(node):
            return _Step(None, "constant")
        live = [s for s in (self.states.get(n) for n in node.all_input_nodes) if s is not None]
        if not live:
            return _Step(None, "constant")
        try:
            base = _union(live)
        except UnsupportedOperationError as exc:
            raise self._unsupported(node, str(exc)) from None
        if node.op == "call_module":
            return self._module(node, base)
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        name = "getitem" if name == "__getitem__" else str(name).lstrip("_")
        return self._function(node, base, name)

    # -- modules -----------------------------------------------------------------------------
    def _module(self, node: fx.Node, base: _RF) -> _Step:
        m = self.modules[str(node.target)]
        if isinstance(m, _UNSUPPORTED_3D):
            raise self._unsupported(node, "3-D and fractional layers are not supported")
        if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
            nd = 1 if isinstance(m, nn.ConvTranspose1d) else 2
            k, s, p, d = (
                _hw(v, nd, n)
                for v, n in zip((m.kernel_size, m.stride, m.padding, m.dilation), (1, 1, 0, 1), strict=True)
            )
            return _Step(_transposed(self._std(node, base), k, s, p, d), "conv_transpose", _max_int(d))
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nd = 1 if isinstance(m, nn.Conv1d) else 2
            k, s, d = (_hw(v, nd, 1) for v in (m.kernel_size, m.stride, m.dilation))
            p = _conv_padding(m.padding, k, d, nd)
            return _Step(_kernel(self._std(node, base), k, s, p, d), "conv", _max_int(d))
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.LPPool1d, nn.LPPool2d)):
            nd = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d, nn.LPPool1d)) else 2
            k, s, p, d = (_hw(v, nd, n) for v, n in zip(_pool_params(m), (1, 1, 0, 1), strict=True))
            return _Step(_kernel(self._std(node, base), k, s, p, d), "pool", _max_int(d))
        if isinstance(
            m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
        ):
            return self._adaptive(node, base)
        if isinstance(m, (nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)):
            return _Step(_GLOBAL, "global_pool")
        if isinstance(m, nn.Upsample):
            return self._interpolate(node, base, m.scale_factor, m.mode, m.align_corners)
        if isinstance(m, (nn.MaxUnpool1d, nn.MaxUnpool2d)):
            nd = 1 if isinstance(m, nn.MaxUnpool1d) else 2
            k, s, p = (
                _hw(v, nd, n) for v, n in zip((m.kernel_size, m.stride, m.padding), (1, 1, 0), strict=True)
            )
            return _Step(_transposed(self._std(node, base), k, s, p, (1, 1), grow=False), "unpool")
        if isinstance(m, nn.PixelShuffle):
            r = m.upscale_factor
            return _Step(_resample(self._std(node, base), (r, r), (0, 0)), "pixel_shuffle")
        if isinstance(m, nn.PixelUnshuffle):
            r = m.downscale_factor
            return _Step(_kernel(self._std(node, base), (r, r), (r, r), (0, 0), (1, 1)), "pixel_unshuffle")
        if isinstance(m, nn.Flatten):
            return self._flatten(node, base, m.start_dim, m.end_dim)
        if isinstance(m, (nn.Linear, nn.Bilinear)):
            return self._linear(node, base)
        if isinstance(m, _GLOBAL_MODULES):
            return _Step(_GLOBAL, "attention")
        if isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            dim = 1 if m.dim is None else m.dim
            if self._touches_spatial(dim, self._ndim(node.args[0]), base):
                return _Step(_GLOBAL, "global")
            return _Step(base)
        if isinstance(m, nn.GLU):
            return self._along(node, base, m.dim, "GLU along a spatial axis halves the image")
        if isinstance(m, _POINTWISE_MODULES):
            return _Step(base)
        if isinstance(m, _PAD_MODULES):
            return self._pad(node, base, m.padding)  # type: ignore[attr-defined]
        return self._generic(node, base, known_pointwise=False)

    # -- functions and methods ---------------------------------------------------------------
    def _function(self, node: fx.Node, base: _RF, name: str) -> _Step:
        bind = self._bind
        if name in ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"):
            nd = 1 if name.endswith("1d") else 2
            transposed = name.startswith("conv_transpose")
            names = ["input", "weight", "bias", "stride", "padding"]
            names += ["output_padding", "groups", "dilation"] if transposed else ["dilation", "groups"]
            a = bind(node, names)
            w = self._value(a["weight"])
            if not isinstance(w, _TensorInfo):
                raise self._unsupported(node, "cannot determine the kernel size")
            k = _hw(w.shape[2:], nd, 1)
            s, d = _hw(self._value(a.get("stride", 1)), nd, 1), _hw(self._value(a.get("dilation", 1)), nd, 1)
            st = self._std(node, base)
            if transposed:
                p = _hw(self._value(a.get("padding", 0)), nd, 0)
                return _Step(_transposed(st, k, s, p, d), "conv_transpose", _max_int(d))
            p = _conv_padding(self._value(a.get("padding", 0)), k, d, nd)
            return _Step(_kernel(st, k, s, p, d), "conv", _max_int(d))
        if name in _POOL_FUNCTIONS:
            nd = 1 if "1d" in name else 2
            if name.startswith("lp_pool"):
                a = bind(node, ["input", "norm_type", "kernel_size", "stride", "ceil_mode"])
            elif name.startswith("avg_pool"):
                a = bind(node, ["input", "kernel_size", "stride", "padding"])
            else:
                a = bind(node, ["input", "kernel_size", "stride", "padding", "dilation"])
            k = self._value(a["kernel_size"])
            s = self._value(a.get("stride")) or k
            k, s = _hw(k, nd, 1), _hw(s, nd, 1)
            p, d = _hw(self._value(a.get("padding", 0)), nd, 0), _hw(self._value(a.get("dilation", 1)), nd, 1)
            return _Step(_kernel(self._std(node, base), k, s, p, d), "pool", _max_int(d))
        if name.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
            if name.endswith("3d"):
                return _Step(_GLOBAL, "global_pool")
            return self._adaptive(node, base)
        if name in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
            a = bind(node, ["input", "size", "scale_factor", "mode", "align_corners"])
            mode, align = a.get("mode", "nearest"), a.get("align_corners")
            if name == "upsample_bilinear":
                mode, align = "bilinear", True
            elif name == "upsample_nearest":
                mode, align = "nearest", None
            return self._interpolate(
                node, base, a.get("scale_factor"), mode, align, a.get("antialias", False)
            )
        if name in ("max_unpool1d", "max_unpool2d"):
            nd = 1 if "1d" in name else 2
            a = bind(node, ["input", "indices", "kernel_size", "stride", "padding"])
            k = self._value(a["kernel_size"])
            s = self._value(a.get("stride")) or k
            k, s, p = _hw(k, nd, 1), _hw(s, nd, 1), _hw(self._value(a.get("padding", 0)), nd, 0)
            return _Step(_transposed(self._std(node, base), k, s, p, (1, 1), grow=False), "unpool")
        if name in ("pixel_shuffle", "pixel_unshuffle"):
            a = bind(node, ["input", "factor"])
            r = int(self._value(a.get("factor", a.get("upscale_factor", a.get("downscale_factor")))))
            st = self._std(node, base)
            if name == "pixel_shuffle":
                return _Step(_resample(st, (r, r), (0, 0)), "pixel_shuffle")
            return _Step(_kernel(st, (r, r), (r, r), (0, 0), (1, 1)), "pixel_unshuffle")
        if name == "pad":
            a = bind(node, ["input", "pad", "mode", "value"])
            return self._pad(node, base, self._value(a["pad"]))
        if name == "flatten":
            a = bind(node, ["input", "start_dim", "end_dim"], {"start_dim": 0, "end_dim": -1})
            return self._flatten(node, base, self._value(a["start_dim"]), self._value(a["end_dim"]))
        if name in ("linear", "bilinear"):
            return self._linear(node, base)
        if name in ("scaled_dot_product_attention", "multi_head_attention_forward"):
            return _Step(_GLOBAL, "attention")
        if name == "getitem":
            return self._getitem(node, base)
        if name == "getattr":
            attr = node.args[1]
            if attr == "data":
                return _Step(base)
            if attr in ("T", "mT", "mH", "H"):
                return self._permute(node, base, "t" if attr == "T" else "transpose_last")
            return self._generic(node, base, known_pointwise=False)
        if name in _REDUCTIONS:
            return self._reduction(node, base, name)
        if name in _DIM_GLOBAL:
            names = ["input", "p", "dim"] if name == "normalize" else ["input", "dim"]
            default = 1 if name in ("normalize", "softmax", "log_softmax", "softmin") else None
            a = bind(node, names, {"dim": default})
            if self._touches_spatial(a["dim"], self._ndim(node.args[0]), base):
                return _Step(_GLOBAL, "global")
            return _Step(base)
        if name in ("cat", "concat", "concatenate", "stack"):
            a = bind(node, ["tensors", "dim"], {"dim": 0})
            tensors = a["tensors"]
            first = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else None
            if name == "stack":
                return self._insert_dim(node, base, a["dim"], self._ndim(first))
            return self._along(node, base, a["dim"], "concatenation along a spatial axis", self._ndim(first))
        if name in ("split", "chunk", "tensor_split", "split_with_sizes"):
            a = bind(node, ["input", "arg", "dim"], {"dim": 0})
            return self._along(node, base, a["dim"], "splitting along a spatial axis")
        if name == "unbind":
            a = bind(node, ["input", "dim"], {"dim": 0})
            return self._remove_dims(node, base, a["dim"])
        if name == "glu":
            a = bind(node, ["input", "dim"], {"dim": -1})
            return self._along(node, base, a["dim"], "GLU along a spatial axis halves the image")
        if name in _PERMUTES or name == "t":
            return self._permute(node, base, name)
        if name in _VIEWS:
            return self._view(node, base, name)
        return self._generic(node, base, known_pointwise=name in _POINTWISE_NAMES)

    # -- rules shared by modules and functions -----------------------------------------------
    def _generic(self, node: fx.Node, base: _RF, known_pointwise: bool) -> _Step:
        """Unknown op: pointwise if it provably keeps the spatial dimensions, else an error."""
        if base.is_global:
            return _Step(base)
        out_shape = self._shape(node)
        in_shapes = [self._shape(n) for n in node.all_input_nodes if self.states.get(n) is not None]
        if out_shape is not None and in_shapes and all(s is not None for s in in_shapes):
            out_pos = self._pos(base, len(out_shape))
            keeps = all(
                len(s) == len(out_shape) and all(s[p] == out_shape[p] for p in out_pos)  # type: ignore[index]
                for s in in_shapes
            )
            if min(out_pos) >= 0 and keeps:
                return _Step(base)
            raise self._unsupported(
                node,
                f"changes the spatial size ({in_shapes} -> {out_shape}) "
                "and its effect on the receptive field is unknown",
            )
        if known_pointwise:
            return _Step(base)
        raise self._unsupported(
            node, "unknown operation and no recorded shapes to check that it keeps the spatial size"
        )

    def _along(self, node: fx.Node, base: _RF, dim: Any, why: str, ndim: int | None = None) -> _Step:
        """Ops acting along one dimension (cat, split, GLU): fine unless it is a spatial one."""
        if base.is_global:
            return _Step(base)
        ndim = self._ndim(node.args[0]) if ndim is None else ndim
        if self._touches_spatial(dim, ndim, base):
            raise self._unsupported(node, why)
        return _Step(base)

    def _insert_dim(self, node: fx.Node, base: _RF, dim: Any, ndim: int) -> _Step:
        """``unsqueeze`` / ``stack``: a new dimension at ``dim`` of the (ndim+1)-rank result."""
        if base.is_global:
            return _Step(base)
        q = int(self._value(dim)) % (ndim + 1)
        axes = [a - 1 if ndim + a < q else a for a in base.axes]
        return _Step(_moved(base, axes), "reshape")

    def _remove_dims(self, node: fx.Node, base: _RF, dim: Any, ndim: int | None = None) -> _Step:
        """``unbind`` / ``squeeze(dim)`` / reductions without keepdim: drop non-spatial dims."""
        if base.is_global:
            return _Step(base)
        ndim = self._ndim(node.args[0]) if ndim is None else ndim
        dims = self._dims(dim, ndim)
        pos = self._pos(base, ndim)
        if dims is None or set(dims) & set(pos):
            return _Step(_GLOBAL, "flatten")
        axes = [a + sum(1 for d in dims if d > p) for a, p in zip(base.axes, pos, strict=True)]
        return _Step(_moved(base, axes), "reshape")

    def _linear(self, node: fx.Node, base: _RF) -> _Step:
        """Linear layers mix their last dimension: global on (.., W), pointwise on channels-last."""
        if base.is_global:
            return _Step(base, "linear")
        ndim = self._ndim(node.args[0])
        if ndim - 1 in self._pos(base, ndim):
            return _Step(_GLOBAL, "linear")
        return _Step(base, "linear")

    def _pad(self, node: fx.Node, base: _RF, pad: Any) -> _Step:
        """``F.pad`` / padding modules: pairs (left, right) start at the last dimension."""
        if base.is_global:
            return _Step(base, "pad")
        pad = tuple(int(v) for v in pad)
        offsets = []
        for a in base.axes:
            pair = -a - 1  # dimension -1 uses pad[0:2], -2 uses pad[2:4] ...
            offsets.append(-pad[2 * pair] if 2 * pair < len(pad) else 0)
        return _Step(_shift(base, offsets), "pad")

    def _flatten(self, node: fx.Node, base: _RF, start: int, end: int) -> _Step:
        if base.is_global:
            return _Step(base, "flatten")
        ndim = self._ndim(node.args[0] if node.args else None)
        start, end = int(start) % ndim, int(end) % ndim
        if start >= end:
            return _Step(base, "reshape")
        pos = self._pos(base, ndim)
        if any(start <= p <= end for p in pos):
            return _Step(_GLOBAL, "flatten")
        axes = [a + (end - start) if p > end else a for a, p in zip(base.axes, pos, strict=True)]
        return _Step(_moved(base, axes), "reshape")

    def _adaptive(self, node: fx.Node, base: _RF) -> _Step:
        """Adaptive pooling: global to 1x1, otherwise its exact windows when shapes are known."""
        st = self._std(node, base)
        in_shape, out_shape = self._shape(node.args[0]), self._shape(node)
        if st.is_global or in_shape is None or out_shape is None:
            return _Step(_GLOBAL, "global_pool")
        nd = 1 if len(in_shape) == 3 else 2
        ins, outs = _hw(in_shape[-nd:], nd, 1), _hw(out_shape[-nd:], nd, 1)
        if all(o == 1 for o in outs) and any(i > 1 for i in ins):
            return _Step(_GLOBAL, "global_pool")
        for axis in range(2):
            i, o = int(ins[axis]), int(outs[axis])
            if i == o:
                continue
            if o < i:  # windows [floor(n*i/o), ceil((n+1)*i/o)): at most ceil(i/o) (+1) units
                k: list[Any] = [1, 1]
                s: list[Any] = [1, 1]
                k[axis] = -(-i // o) + (0 if i % o == 0 else 1)
                s[axis] = Fraction(i, o)
                st = _kernel(st, k, s, (0, 0), (1, 1))
            else:  # replication (upsampling)
                f: list[Any] = [1, 1]
                taps = [0, 0]
                f[axis] = Fraction(o, i)
                taps[axis] = 0 if o % i == 0 else 1
                st = _resample(st, f, taps)
        return _Step(st, "adaptive_pool")

    def _interpolate(
        self,
        node: fx.Node,
        base: _RF,
        scale_factor: Any,
        mode: Any,
        align_corners: Any,
        antialias: Any = False,
    ) -> _Step:
        st = self._std(node, base)
        mode, align_corners = self._value(mode), bool(self._value(align_corners))
        in_shape, out_shape = self._shape(node.args[0]), self._shape(node)
        ndim = len(in_shape) if in_shape is not None else 4
        if ndim not in (3, 4):
            raise self._unsupported(node, "only 1-D and 2-D resampling is supported")
        nd = ndim - 2
        scale_factor = self._value(scale_factor)
        if scale_factor is not None:
            factor = _hw(scale_factor, nd, 1)
        elif in_shape is not None and out_shape is not None:
            ratios = tuple(Fraction(o, i) for o, i in zip(out_shape[-nd:], in_shape[-nd:], strict=True))
            factor = _hw(ratios, nd, _ONE)
        else:
            raise self._unsupported(node, "interpolation to a size needs recorded shapes; pass input_shape")
        if mode == "area":  # adaptive average pooling: ceil(1/f) units when shrinking
            taps = tuple(
                math.ceil(1 / _frac(f)) - 1 if _frac(f) < 1 else (0 if _frac(f).denominator == 1 else 1)
                for f in factor
            )
        elif mode in _INTERP_TAPS:
            # antialiased downsampling widens the (bi)linear / bicubic kernel to (t + 1) / f taps
            t = _INTERP_TAPS[mode]
            wide = bool(self._value(antialias)) and t > 0
            taps = tuple(math.ceil((t + 1) / _frac(f)) - 1 if wide and _frac(f) < 1 else t for f in factor)
        else:
            raise self._unsupported(node, f"unknown interpolation mode {mode!r}")
        return _Step(_resample(st, factor, taps, align_corners), "upsample")

    def _reduction(self, node: fx.Node, base: _RF, name: str) -> _Step:
        names = ["input", "p", "dim", "keepdim"] if name == "norm" else ["input", "dim", "keepdim"]
        a = self._bind(node, names, {"dim": None, "keepdim": False})
        other = a.get("dim")
        if name in ("max", "min") and isinstance(other, fx.Node) and self.states.get(other) is not None:
            return _Step(base)  # elementwise torch.max(a, b)
        ndim = self._ndim(node.args[0])
        if self._touches_spatial(a["dim"], ndim, base):
            return _Step(_GLOBAL, "global_pool")
        if base.is_global or self._value(a.get("keepdim", False)):
            return _Step(base)
        return self._remove_dims(node, base, a["dim"], ndim)

    def _view(self, node: fx.Node, base: _RF, name: str) -> _Step:
        """Reshapes: spatial layout kept if the dims from H onwards survive, else global."""
        if base.is_global:
            return _Step(base, "reshape")
        ndim = self._ndim(node.args[0])
        dim = self._bind(node, ["input", "dim"]).get("dim")
        if name.startswith("unsqueeze"):
            return self._insert_dim(node, base, dim, ndim)
        if name.startswith("squeeze") and dim is not None:
            return self._remove_dims(node, base, dim, ndim)
        in_shape, out_shape = self._shape(node.args[0]), self._shape(node)
        if in_shape is not None and out_shape is not None:
            tail = in_shape[min(self._pos(base, ndim)) :]
            if len(out_shape) >= len(tail) and tuple(out_shape[len(out_shape) - len(tail) :]) == tuple(tail):
                return _Step(base, "reshape")
        return _Step(_GLOBAL, "flatten")

    def _permute(self, node: fx.Node, base: _RF, name: str) -> _Step:
        if base.is_global:
            return _Step(base, "permute")
        ndim = self._ndim(node.args[0])
        perm = list(range(ndim))  # output dimension i comes from input dimension perm[i]
        args = [self._value(a) for a in node.args[1:]] + [self._value(v) for v in node.kwargs.values()]
        if name == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            perm = [int(d) % ndim for d in dims]
        elif name == "t":
            perm = perm[::-1]
        elif name == "transpose_last":
            perm[-2], perm[-1] = perm[-1], perm[-2]
        elif name in ("transpose", "swapaxes", "swapdims"):
            a, b = (int(x) % ndim for x in args[:2])
            perm[a], perm[b] = perm[b], perm[a]
        else:  # movedim / moveaxis
            src, dst = args[:2]
            src = [int(s) % ndim for s in (src if isinstance(src, (tuple, list)) else [src])]
            dst = [int(d) % ndim for d in (dst if isinstance(dst, (tuple, list)) else [dst])]
            perm = [-1] * ndim
            for s_, d_ in zip(src, dst, strict=True):
                perm[d_] = s_
            rest = iter(d for d in range(ndim) if d not in src)
            perm = [p if p >= 0 else next(rest) for p in perm]
        axes = [perm.index(p) - ndim for p in self._pos(base, ndim)]
        return _Step(_moved(base, axes), "permute")

    def _getitem(self, node: fx.Node, base: _RF) -> _Step:
        src, idx = node.args[0], node.args[1]
        src_meta = self.meta.get(src) if (self.meta is not None and isinstance(src, fx.Node)) else None
        if base.is_global or isinstance(src_meta, (tuple, list, dict)):
            return _Step(base)  # element of a tuple output (max-pool indices, split, chunk ...)
        if isinstance(idx, fx.Node) and self.states.get(idx) is not None:
            return self._generic(node, base, known_pointwise=False)  # advanced (tensor) indexing
        idx = self._value(idx)
        items = list(idx) if isinstance(idx, tuple) else [idx]
        shape = self._shape(src)
        ndim = len(shape) if shape is not None else 4
        if any(it is Ellipsis for it in items):
            at = next(i for i, it in enumerate(items) if it is Ellipsis)
            consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
            items = items[:at] + [slice(None)] * (ndim - consumed) + items[at + 1 :]
        out_dims: list[int | None] = []  # input dimension behind each output dimension (None: new)
        per_dim: dict[int, Any] = {}
        d = 0
        for it in items:
            if it is None:
                out_dims.append(None)
                continue
            per_dim[d] = it
            if not isinstance(it, int):
                out_dims.append(d)
            d += 1
        out_dims += list(range(d, ndim))
        offset, step = [0, 0], [1, 1]
        pos = self._pos(base, ndim)
        for axis, p in enumerate(pos):
            item = per_dim.get(p, slice(None))
            if not isinstance(item, slice):
                raise self._unsupported(node, "indexing a spatial axis with an integer or tensor")
            first, stride = item.start, 1 if item.step is None else int(item.step)
            if stride <= 0:
                raise self._unsupported(node, "non-positive slice step")
            if first is None:
                first = 0
            elif int(first) < 0:
                if shape is None:
                    raise self._unsupported(node, "negative slice start needs recorded shapes")
                first = slice(first, None, stride).indices(shape[p])[0]
            offset[axis], step[axis] = int(first), stride
        axes = [out_dims.index(p) - len(out_dims) for p in pos]
        return _Step(_moved(_shift(base, offset, step), axes), "slice")


# ----------------------------------------------------------------------------------------------
# Public API: theoretical receptive field
# ----------------------------------------------------------------------------------------------


def _layer(
    name: str,
    kind: str,
    type_name: str,
    state: _RF,
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
        rf_hw = (_number(state.rf[0]), _number(state.rf[1]))
        jump_hw = (_number(state.jump[0]), _number(state.jump[1]))
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
    gm = _trace(model, leaf_modules)
    meta, used_shape = _record(gm, model, tuple(input_shape) if input_shape is not None else None)
    prop = _Propagator(gm, meta)
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
        shape = prop._shape(node)
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
        if step.kind in _ROW_KINDS and node.op in ("call_module", "call_function", "call_method"):
            rows.append(rec)

    module_calls = {}
    for key, node in last_in_scope.items():
        module_calls[key] = nodes[node.name]

    out_state = prop.output_state if prop.output_state is not None else _GLOBAL
    output_node = next(n for n in gm.graph.nodes if n.op == "output")
    out_shape = None
    if meta is not None and output_node in meta:
        infos = _tensor_infos(meta[output_node])
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


# ----------------------------------------------------------------------------------------------
# Effective receptive field
# ----------------------------------------------------------------------------------------------


@dataclass
class ERF:
    """Result of the gradient probe.

    ``grad``: (H, W) map of ``|d y / d x|`` summed over input channels (and batch), averaged over
    the probe inputs, where ``y`` is the probed output unit.  ``bbox``: inclusive
    (top, left, bottom, right) of the pixels with ``grad > threshold * grad.max()``; ``extent`` is
    its (height, width) -- the empirical theoretical receptive field, clipped to the image.
    ``effective``: per-axis length of the central interval holding ``mass`` of the marginal
    gradient mass (``(1 - mass) / 2`` trimmed from each tail), ``effective_bbox`` the matching box.
    ``sigma``/``centre``: gradient-weighted standard deviation / mean per axis (Luo et al. report
    the ERF as roughly Gaussian; ``4 * sigma`` is its ±2σ width).  ``output_index``: spatial index
    of the probed output unit, ``()`` when the output has no spatial axes (the sum of all outputs
    is probed).
    """

    grad: torch.Tensor
    extent: tuple[int, int]
    bbox: tuple[int, int, int, int] | None
    effective: tuple[int, int]
    effective_bbox: tuple[int, int, int, int] | None
    sigma: tuple[float, float]
    centre: tuple[float, float]
    output_index: tuple[int, ...]
    mass: float
    threshold: float

    @property
    def rf(self) -> int:
        """Largest side of the support's bounding box."""
        return max(self.extent)

    @property
    def effective_rf(self) -> int:
        return max(self.effective)


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        values = [out["out"]] if "out" in out else list(out.values())
        for v in values:
            if isinstance(v, torch.Tensor):
                return v
    if isinstance(out, (tuple, list)):
        for v in out:
            if isinstance(v, torch.Tensor):
                return v
    raise TypeError(f"model output of type {type(out).__name__} contains no tensor")


def _central_interval(profile: torch.Tensor, mass: float) -> tuple[int, int]:
    total = float(profile.sum())
    cdf = torch.cumsum(profile, 0) / total
    tail = (1.0 - mass) / 2.0
    eps = 1e-12
    lo = int(torch.nonzero(cdf > tail + eps)[0])
    hi = int(torch.nonzero(cdf >= 1.0 - tail - eps)[0])
    return lo, max(lo, hi)


def effective_receptive_field(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 3, 64, 64),
    threshold: float = 0.0,
    *,
    mass: float = 0.95,
    input_mode: str = "random",
    n_samples: int = 4,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = torch.float64,
) -> ERF:
    """Empirical receptive field: gradient of the centre output unit w.r.t. the input.

    The model is put in eval mode (training flags restored afterwards; BatchNorm statistics are
    not touched).  Probe inputs: ``input_mode="random"`` draws ``n_samples`` standard-normal
    inputs from a generator seeded with ``seed`` (deterministic; several samples make it very
    unlikely that ReLU or max-pool gating hides an edge of the receptive field), ``"ones"`` uses a
    single all-ones input.  For a (N, K, H', W') output the probed scalar is the sum over batch
    and channels at ``(H'//2, W'//2)``; for a (N, K) classifier it is the sum of all logits (the
    whole image is then the receptive field).  Tuple/dict outputs use their first tensor (or
    ``"out"``).

    ``dtype`` (default float64): the probe runs on a deep copy cast to this dtype, so that the
    gradient is exactly zero outside the receptive field (no Winograd/FFT round-off) and deep
    chains do not underflow; pass ``None`` to use the model as is.  ``threshold`` is relative to
    the maximum gradient; the default 0 means "any non-zero gradient".
    """
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    if input_mode not in ("random", "ones"):
        raise ValueError(f"input_mode must be 'random' or 'ones', got {input_mode!r}")
    if not 0.0 < mass <= 1.0:
        raise ValueError("mass must be in (0, 1]")
    model_device, model_dtype = _model_device_dtype(model)
    device = torch.device(device) if device is not None else model_device
    probe = model
    if dtype is not None and dtype != model_dtype:
        probe = copy.deepcopy(model).to(dtype=dtype)
    work_dtype = dtype if dtype is not None else model_dtype

    gen = torch.Generator().manual_seed(seed)
    samples = n_samples if input_mode == "random" else 1
    total = torch.zeros(tuple(input_shape[2:]), dtype=torch.float64)
    index: tuple[int, ...] = ()
    with _TrainingFlagsRestored(model), torch.enable_grad():
        probe.eval()
        for _ in range(samples):
            if input_mode == "random":
                x = torch.randn(tuple(input_shape), generator=gen, dtype=torch.float64)
            else:
                x = torch.ones(tuple(input_shape), dtype=torch.float64)
            x = x.to(device=device, dtype=work_dtype).requires_grad_(True)
            out = _first_tensor(probe(x))
            if out.dim() >= 3:
                index = tuple(s // 2 for s in out.shape[2:])
                target = out[(slice(None), slice(None), *index)].sum()
            else:
                index = ()
                target = out.sum()
            (grad,) = torch.autograd.grad(target, x)
            total += grad.detach().abs().sum(dim=(0, 1)).to("cpu", torch.float64)
    grad_map = total / samples

    peak = float(grad_map.max())
    support = grad_map > threshold * peak if peak > 0 else torch.zeros_like(grad_map, dtype=torch.bool)
    if bool(support.any()):
        rows = torch.nonzero(support.any(dim=1)).flatten()
        cols = torch.nonzero(support.any(dim=0)).flatten()
        bbox: tuple[int, int, int, int] | None = (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
        extent = (bbox[2] - bbox[0] + 1, bbox[3] - bbox[1] + 1)  # type: ignore[index]
        prof_h, prof_w = grad_map.sum(dim=1), grad_map.sum(dim=0)
        (t, b), (l_, r) = _central_interval(prof_h, mass), _central_interval(prof_w, mass)
        eff_bbox: tuple[int, int, int, int] | None = (t, l_, b, r)
        effective = (b - t + 1, r - l_ + 1)
        w = grad_map / grad_map.sum()
        ys = torch.arange(grad_map.shape[0], dtype=torch.float64)
        xs = torch.arange(grad_map.shape[1], dtype=torch.float64)
        cy, cx = float((w.sum(1) * ys).sum()), float((w.sum(0) * xs).sum())
        sy = math.sqrt(float((w.sum(1) * (ys - cy) ** 2).sum()))
        sx = math.sqrt(float((w.sum(0) * (xs - cx) ** 2).sum()))
    else:
        bbox, eff_bbox, extent, effective = None, None, (0, 0), (0, 0)
        cy = cx = sy = sx = math.nan
    return ERF(
        grad=grad_map,
        extent=extent,
        bbox=bbox,
        effective=effective,
        effective_bbox=eff_bbox,
        sigma=(sy, sx),
        centre=(cy, cx),
        output_index=index,
        mass=mass,
        threshold=threshold,
    )


def save_erf_heatmap(erf: ERF, path: str | Path, *, title: str | None = None, dpi: int = 100) -> Path:
    """Write the ERF gradient map as a PNG heat map with its support and effective boxes.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch), imported lazily
    so that the analysis itself depends on torch only.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(erf.grad.detach().cpu().float().numpy(), cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="|d y / d x|")
    for box, colour, style, label in (
        (erf.bbox, "red", "-", f"support {erf.extent[0]}x{erf.extent[1]}"),
        (erf.effective_bbox, "white", "--", f"{erf.mass:.0%} mass {erf.effective[0]}x{erf.effective[1]}"),
    ):
        if box is not None:
            top, left, bottom, right = box
            ax.add_patch(
                Rectangle(
                    (left - 0.5, top - 0.5),
                    right - left + 1,
                    bottom - top + 1,
                    fill=False,
                    edgecolor=colour,
                    linestyle=style,
                    linewidth=1.2,
                    label=label,
                )
            )
    if erf.bbox is not None:
        ax.legend(loc="upper right", fontsize="small", framealpha=0.6)
    ax.set_title(title or "Effective receptive field")
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=dpi)
    return path
