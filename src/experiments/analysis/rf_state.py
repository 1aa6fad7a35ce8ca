"""The receptive field of one tensor, and the arithmetic every layer applies to it.

Internal to :mod:`experiments.analysis.receptive_field`. A tensor carries three numbers per spatial
axis (H and W separately, so non-square kernels, strides and dilations are exact): ``rf`` (the size,
in input pixels, of the input region one unit depends on), ``jump`` (the distance in input pixels
between neighbouring units; fractional after upsampling) and ``start`` (the centre of unit 0's region;
padding shifts it). ``j`` below is the input jump, ``k``/``s``/``p``/``d`` kernel, stride, left
padding and dilation.

* convolution / pooling (:func:`kernel`): ``rf += (k-1)*d*j``, ``start += ((k-1)*d/2 - p)*j``,
  ``jump = j*s``;
* transposed convolution (:func:`transposed`): ``jump = j/s``, ``rf += floor((k-1)*d/s)*j``,
  ``start += (p - (k-1)*d/2)/s*j``. Output unit ``o`` reads the input units ``i`` with
  ``i*s = o + p - t*d`` for taps ``t``; at most ``floor((k-1)*d/s) + 1`` consecutive input units
  satisfy this, so the formula is exact for the worst-placed output unit. The often-quoted
  "continuous" form ``rf += (k-1)*d*jump_out`` over-counts by a fraction of ``j`` (for ``k = s = 2``
  it claims half an input unit of growth that does not exist); max-unpooling is the same without growth;
* resampling by a factor ``f`` (:func:`resample`: ``nn.Upsample``, ``F.interpolate``,
  ``PixelShuffle``): ``jump = j/f``; ``rf`` grows by the number of extra interpolation taps times ``j``
  (nearest 0, (bi)linear 1, bicubic 3); ``start`` follows the ``align_corners=False`` mapping;
* strided slicing and padding (:func:`shift`): ``jump *= t``, ``start += a*j``;
* elementwise / multi-input ops (:func:`union`): the union of the input regions. When the paths are
  centred on the same pixel (any "same"-padded network: ResNet shortcuts, FCN skips) this is exactly
  the maximum over paths; when they are offset (valid convolutions, crops) the union is what the
  network really sees, which can exceed the maximum;
* anything that mixes all spatial positions makes the tensor **global** (:data:`GLOBAL_STATE`),
  which is absorbing: everything computed from a global tensor is global.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, NamedTuple

from experiments.errors import UnsupportedOperationError

ONE = Fraction(1)
ZERO = Fraction(0)
Pair = tuple[Fraction, Fraction]


@dataclass(frozen=True)
class RFState:
    """Receptive field of one tensor.  Fractions keep fractional jumps exact.

    Per-axis tuples are indexed (H, W); ``axes`` holds the (negative) tensor dimensions that
    currently carry H and W -- (-2, -1) for NCHW, (-3, -2) after a channels-last permute.
    """

    rf: Pair = (ONE, ONE)
    jump: Pair = (ONE, ONE)
    start: Pair = (ZERO, ZERO)
    is_global: bool = False
    axes: tuple[int, int] = (-2, -1)


GLOBAL_STATE = RFState(is_global=True)


class Step(NamedTuple):
    """What one graph node does: its output state (None: not a tensor), row kind and own dilation."""

    state: RFState | None
    kind: str = "pointwise"
    dilation: int = 1


def frac(value: Any) -> Fraction:
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(value).limit_denominator(1_000_000)
    return Fraction(int(value))


def number(x: Fraction) -> int | float:
    return int(x) if x.denominator == 1 else float(x)


def hw(value: Any, nd: int, neutral: Any) -> tuple[Any, Any]:
    """Expand an int / 1-tuple / 2-tuple layer argument to an (H, W) pair.

    1-D operations act on the last (W) axis and leave H untouched (``neutral``).
    """
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value,) * max(nd, 1)
    if nd == 1:
        return (neutral, vals[-1])
    if len(vals) == 1:
        vals = vals * 2
    return (vals[-2], vals[-1])


def max_int(pair: tuple[Any, Any]) -> int:
    return int(max(int(pair[0]), int(pair[1])))


def _make(st: RFState, rf: list[Fraction], jump: list[Fraction], start: list[Fraction]) -> RFState:
    return RFState((rf[0], rf[1]), (jump[0], jump[1]), (start[0], start[1]), False, st.axes)


def kernel(st: RFState, k: Sequence[Any], s: Sequence[Any], p: Sequence[Any], d: Sequence[Any]) -> RFState:
    """Convolution / pooling window: rf += (k-1)*d*j, start += ((k-1)*d/2 - p)*j, jump *= s."""
    if st.is_global:
        return st
    rf, jump, start = [], [], []
    for i in range(2):
        ki, si, pi, di = frac(k[i]), frac(s[i]), frac(p[i]), frac(d[i])
        j = st.jump[i]
        rf.append(st.rf[i] + (ki - 1) * di * j)
        start.append(st.start[i] + ((ki - 1) * di / 2 - pi) * j)
        jump.append(j * si)
    return _make(st, rf, jump, start)


def transposed(
    st: RFState, k: Sequence[Any], s: Sequence[Any], p: Sequence[Any], d: Sequence[Any], grow: bool = True
) -> RFState:
    """Transposed convolution (``grow``) or max-unpooling (no growth); see the module docstring."""
    if st.is_global:
        return st
    rf, jump, start = [], [], []
    for i in range(2):
        ki, si, pi, di = int(k[i]), int(s[i]), frac(p[i]), int(d[i])
        j = st.jump[i]
        extra = ((ki - 1) * di) // si if grow else 0
        rf.append(st.rf[i] + extra * j)
        start.append(st.start[i] + (pi - Fraction((ki - 1) * di, 2)) / si * j)
        jump.append(j / si)
    return _make(st, rf, jump, start)


def resample(st: RFState, factor: Sequence[Any], taps: Sequence[int], align_corners: bool = False) -> RFState:
    """Resampling by ``factor`` per axis; ``taps`` = extra input units read per output unit."""
    if st.is_global:
        return st
    rf, jump, start = [], [], []
    for i in range(2):
        f = frac(factor[i])
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


def shift(st: RFState, offset: Sequence[Any], step: Sequence[Any] = (1, 1)) -> RFState:
    """Crop / pad / strided slice: output unit 0 is input unit ``offset``; jump *= step."""
    if st.is_global:
        return st
    start = [st.start[i] + frac(offset[i]) * st.jump[i] for i in range(2)]
    jump = [st.jump[i] * frac(step[i]) for i in range(2)]
    return _make(st, list(st.rf), jump, start)


def moved(st: RFState, axes: Sequence[int]) -> RFState:
    """Same receptive field, spatial axes now at the (negative) tensor dimensions ``axes``."""
    if st.is_global:
        return st
    return replace(st, axes=(int(axes[0]), int(axes[1])))


def union(states: Sequence[RFState]) -> RFState:
    """Receptive field of a unit computed elementwise from several tensors.

    The regions of all inputs are merged (their union's bounding interval per axis); for
    centred paths this is the maximum rf.  The finest jump is kept.
    """
    if len(states) == 1:
        return states[0]
    if any(s.is_global for s in states):
        return GLOBAL_STATE
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
