"""Seed statistics for the report: mean, sample std, Student-t confidence intervals, paired differences.

Standard library only (no numpy/scipy): the report must start fast and run without the training stack,
and the only non-elementary quantity needed, the Student t quantile, has an exact finite series for the
integer degrees of freedom a seed count gives.

The t distribution (Abramowitz & Stegun 26.7.3 and 26.7.4): with ``θ = atan(t/√ν)`` the two-sided mass
``A(t|ν) = P(|T| ≤ t)`` is

* ν = 1: ``2θ/π``;
* ν odd ≥ 3: ``(2/π)·(θ + sinθ·(cosθ + (2/3)cos³θ + … + (2·4…(ν−3))/(1·3…(ν−2))·cos^(ν−2)θ))``;
* ν even: ``sinθ·(1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + … + (1·3…(ν−3))/(2·4…(ν−2))·cos^(ν−2)θ)``.

``A`` increases with θ on (0, π/2), so the quantile is found by bisection on θ to machine precision and
mapped back with ``t = √ν·tanθ``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

#: Coverage of every interval in the report.
CONFIDENCE = 0.95
_BISECTION_STEPS = 200


def _two_sided_mass(theta: float, df: int) -> float:
    """``P(|T| ≤ √df·tanθ)`` for Student's t with ``df`` degrees of freedom (series in the module doc)."""
    sin, cos = math.sin(theta), math.cos(theta)
    cos2 = cos * cos
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        return sin * total
    if df == 1:
        return 2.0 * theta / math.pi
    term = total = cos
    for k in range(1, (df - 3) // 2 + 1):
        term *= cos2 * (2 * k) / (2 * k + 1)
        total += term
    return 2.0 / math.pi * (theta + sin * total)


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` (a positive integer) degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile probability must lie in (0, 1), got {p}")
    if int(df) != df or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    df = int(df)
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    target = 2.0 * p - 1.0  # two-sided mass between -t and t
    low, high = 0.0, math.pi / 2
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if middle in (low, high):  # the interval cannot shrink any further
            break
        if _two_sided_mass(middle, df) < target:
            low = middle
        else:
            high = middle
    return math.sqrt(df) * math.tan(0.5 * (low + high))


def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided critical value ``t_{(1+confidence)/2, df}``: 12.706 for df=1 at 95 %, 2.571 for df=5."""
    return t_quantile(0.5 + confidence / 2.0, df)


@dataclass(frozen=True)
class Stat:
    """Mean, sample std and 95 % t-interval half-width of the values available for one column of one group.

    ``half_width`` is ``t_{0.975, n-1}·std/√n``; None when there are fewer than two values, because one
    value says nothing about the spread.
    """

    n: int
    mean: float | None
    std: float | None
    half_width: float | None = None

    @property
    def ci_low(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean - self.half_width

    @property
    def ci_high(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        """True when there is an interval and 0 lies strictly outside it (NaN never excludes anything)."""
        low, high = self.ci_low, self.ci_high
        if low is None or high is None:
            return False
        return low > 0.0 or high < 0.0


def mean_std(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Stat:
    """Mean, sample std (ddof=1) and t-interval half-width of the non-None values.

    The std is 0.0 for one value (and its interval None), everything None for no value.  Implemented by hand
    rather than with numpy/statistics so NaN propagates predictably and the module stays import-light.
    """
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Stat(0, None, None)
    n = len(xs)
    if n == 1:
        return Stat(1, xs[0], 0.0)
    if all(x == xs[0] for x in xs):
        # Exactly 0 for identical values (e.g. params) instead of floating-point noise like 3e-17.
        return Stat(n, xs[0], 0.0, 0.0)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return Stat(n, mean, std, t_critical(n - 1, confidence) * std / math.sqrt(n))
