"""Inference that respects the metric: bounded seed intervals, a run's own test-set noise, paired tests with Holm.

Three questions, three tools (Agarwal et al., NeurIPS 2021: report interval estimates, not point estimates):

* **Where does an arm's mean lie?** :func:`seed_interval`, over the seeds of one arm.  A metric bounded to
  [0, 1] (accuracy, mIoU, IoU) gets an interval that stays inside [0, 1]; a positive scale-type metric that spans
  orders of magnitude (the loss Hessian's top eigenvalue and trace) gets the log-t interval
  (:func:`log_t_interval`), an interval for its geometric mean that stays positive; any other metric gets the
  ordinary Student t interval.
* **How noisy is one run's number by itself?** :func:`wilson_interval`: a test accuracy is a proportion of
  ``total`` test images, so it carries binomial sampling noise even for a fixed network (Jordan, ICLR 2024: much
  of the seed-to-seed variance of test accuracy is this noise); a test mIoU, a ratio of pixel sums, gets a
  bootstrap over its test images instead (:func:`per_image_miou_interval`).  The report shows it beside the seed
  interval so the two sources of noise are read apart.
* **Does an arm differ from the baseline?** :func:`paired_test` on the per-seed differences ``arm − baseline``:
  the paired t interval and p-value are primary, the exact sign-flip permutation p a distribution-free check.
  The k − 1 comparisons of one metric against the baseline form one family, corrected with Holm's step-down
  method (:func:`holm`, :func:`with_holm`), which controls the family-wise error rate at α without assuming
  independence between the comparisons (they share the baseline, so they are not independent).

**The seed floor.**  An exact sign-flip test over n pairs has 2^n equally likely sign patterns under the null; the
most extreme pattern and its mirror give the smallest two-sided p, 2 / 2^n = 2^(1−n) (:func:`sign_flip_floor`).
So no exact test can reach p < 0.05 below 6 seeds (2^(1−5) = 0.0625), nor pass Holm's first step (α / m) over
m = 3 comparisons below 7 (:func:`sign_flip_min_seeds`).  That is why the primary test is the paired t test,
whose p can be small at any n ≥ 2 (at the price of assuming roughly normal differences), and the exact test is a
check once n ≥ 6.

scipy and statsmodels are imported inside the functions that need them, so importing this module (and the
report's ``--help``) stays light.  The Student t quantile comes from :mod:`experiments.reporting.stats`, which
the old report used too, so unbounded intervals are the same numbers as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

from experiments.reporting.stats import CONFIDENCE, t_critical

#: from this many seeds on, a bounded metric's interval is a BCa bootstrap (below: logit-t); see seed_interval
BOOTSTRAP_MIN_N = 20
#: bootstrap resamples, and the fixed seed of their generator (a report must print the same numbers every time)
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
#: a value exactly at 0 or 1 is moved this far inside before the logit, when no test count says better
DEFAULT_EPSILON = 1e-3
#: exact enumeration of every sign pattern up to this many pairs; a Monte Carlo estimate above it
EXACT_SIGN_FLIP_MAX_N = 20
MONTE_CARLO_FLIPS = 200_000
#: resamples of a segmentation run's test images (its per-image bootstrap of mIoU)
PER_IMAGE_RESAMPLES = 2000
#: the method names printed in tables
T, LOGIT_T, BCA, WILSON, PAIRED_T = "t", "logit-t", "BCa bootstrap", "Wilson", "paired t"
LOG_T = "log-t"
PER_IMAGE_BOOTSTRAP = "per-image bootstrap"


@dataclass(frozen=True)
class Interval:
    """A confidence interval; ``low``/``high`` None when there is none (fewer than two seeds, no test count)."""

    low: float | None
    high: float | None
    method: str  # short name printed in tables: "t", "logit-t", "log-t", "BCa bootstrap", "Wilson"

    @property
    def half_width(self) -> float | None:
        """Half the interval's length (for an asymmetric interval, the mean of its two arms)."""
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2.0

    @property
    def excludes_zero(self) -> bool:
        low, high = self.low, self.high
        return low is not None and high is not None and (low > 0.0 or high < 0.0)


# ------------------------------------------------------------------------------------------ seed intervals


def _mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    mean = sum(xs) / n
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Student t interval of the mean: ``x̄ ± t_{(1+c)/2, n−1} · s/√n``; none below two values."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return Interval(None, None, T)
    if not all(math.isfinite(x) for x in xs):
        return Interval(math.nan, math.nan, T)
    if all(x == xs[0] for x in xs):  # exactly a point, not floating-point noise around it
        return Interval(xs[0], xs[0], T)
    mean, sd = _mean_sd(xs)
    half = t_critical(len(xs) - 1, confidence) * sd / math.sqrt(len(xs))
    return Interval(mean - half, mean + half, T)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _expit(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def logit_t_interval(values: Sequence[float], confidence: float = CONFIDENCE, epsilon: float = DEFAULT_EPSILON
                     ) -> Interval:
    """t interval on the logit scale, mapped back: ``expit(z̄ ± t_{(1+c)/2, n−1} · s_z/√n)`` with ``z = logit(x)``.

    Values are first clipped into ``[ε, 1 − ε]`` (only those outside it move), because ``logit(0)`` and
    ``logit(1)`` are infinite.  The interval is for the centre of the seeds' distribution on the logit scale
    (``expit`` of the mean logit); when the seeds' spread is small next to their distance from 0 and 1 it is the
    ordinary t interval, and near a bound it bends to stay inside [0, 1], as a proportion's uncertainty does.
    """
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return Interval(None, None, LOGIT_T)
    if not all(math.isfinite(x) for x in xs):
        return Interval(math.nan, math.nan, LOGIT_T)
    if all(x == xs[0] for x in xs):
        return Interval(xs[0], xs[0], LOGIT_T)
    zs = [_logit(min(max(x, epsilon), 1.0 - epsilon)) for x in xs]
    mean, sd = _mean_sd(zs)
    half = t_critical(len(zs) - 1, confidence) * sd / math.sqrt(len(zs))
    return Interval(_expit(mean - half), _expit(mean + half), LOGIT_T)


def geometric_mean(values: Sequence[float]) -> float | None:
    """``exp(mean(ln x))``: the centre that :func:`log_t_interval` is an interval for; None for no value or for a
    value at or below 0 (it has no logarithm).  NaN stays NaN, so a diverged run stays visible."""
    xs = [float(v) for v in values if v is not None]
    if not xs or any(x <= 0.0 for x in xs):
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def log_t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """t interval on the log scale, mapped back: ``exp(ȳ ± t_{(1+c)/2, n−1} · s_y/√n)`` with ``y = ln(x)``.

    It is an interval for the *geometric* mean ``exp(ȳ)`` (:func:`geometric_mean`), not the arithmetic mean: for a
    positive quantity whose seeds differ by factors (a Hessian's top eigenvalue or trace, which span orders of
    magnitude across arms) the spread is multiplicative, the logs are closer to normal than the values, and the
    interval stays positive and asymmetric (``×/÷`` the same factor around the centre), where the plain t interval
    can reach below 0.  Values must be positive (``ValueError`` otherwise: :func:`seed_interval` sends those to the
    t interval); fewer than two give none, NaN gives NaN, identical values that point.
    """
    xs = [float(v) for v in values]
    if any(x <= 0.0 for x in xs):  # NaN compares False and passes through to a NaN interval
        raise ValueError(f"log_t_interval needs positive values, got {min(xs)}; use t_interval for these values")
    if len(xs) < 2:
        return Interval(None, None, LOG_T)
    if not all(math.isfinite(x) for x in xs):
        return Interval(math.nan, math.nan, LOG_T)
    if all(x == xs[0] for x in xs):
        return Interval(xs[0], xs[0], LOG_T)
    logs = t_interval([math.log(x) for x in xs], confidence)
    assert logs.low is not None and logs.high is not None
    return Interval(math.exp(logs.low), math.exp(logs.high), LOG_T)


def bootstrap_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """BCa bootstrap interval of the mean (``scipy.stats.bootstrap``, fixed seed); None when it is degenerate.

    Every resampled mean lies between the smallest and largest value, so for values in [0, 1] so does the
    interval.
    """
    import numpy as np
    from scipy import stats

    data = (np.asarray(values, dtype=float),)
    options = dict(n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence, method="BCa")
    try:
        result = stats.bootstrap(data, np.mean, rng=np.random.default_rng(BOOTSTRAP_SEED), **options)
    except TypeError:  # scipy < 1.15 names the generator random_state
        result = stats.bootstrap(data, np.mean, random_state=np.random.default_rng(BOOTSTRAP_SEED), **options)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return Interval(low, high, BCA)


def seed_interval(values: Sequence[float], *, bounded: bool, confidence: float = CONFIDENCE,
                  epsilon: float | None = None, log_scale: bool = False) -> Interval:
    """Across-seed interval of one arm's mean.

    ``bounded=False``: the ordinary Student t interval (:func:`t_interval`).

    ``log_scale=True`` (a positive scale-type metric: the Hessian's top eigenvalue or trace): the log-t interval
    (:func:`log_t_interval`) of the geometric mean; any value at or below 0 (a Hutchinson trace estimate can be
    negative) sends the values to the t interval, named ``"t"``.  It cannot be combined with ``bounded``.

    ``bounded=True`` (accuracy, mIoU, IoU: values in [0, 1]) stays inside [0, 1]:

    * ``n < BOOTSTRAP_MIN_N`` (20): the logit-t interval (:func:`logit_t_interval`).  A bootstrap is too narrow
      at the seed counts sweeps have: its percentile/BCa interval is about ``x̄ ± z·s·√((n−1)/n)``, i.e.
      1.60·s/√n at n = 3 where the t interval has 4.30·s/√n, so it covers far less than it says (the t
      quantile's heavy tail is what pays for estimating s from 3 values).  The logit-t keeps that tail and the
      bound.
    * ``n ≥ 20``: the BCa bootstrap of the mean (``scipy.stats.bootstrap``, 9 999 resamples, fixed seed), which
      assumes no shape for the seeds' distribution (a bimodal sweep where some seeds never leave chance), and
      whose small-sample narrowness has shrunk to under 10 % (1.91·s/√n against t's 2.09·s/√n at n = 20); it
      falls back to logit-t where BCa is degenerate.

    ``epsilon``: values exactly at 0 or 1 are moved ``epsilon`` inside before the logit; pass half a test item
    (``0.5 / test_count``) when the count is known, the smallest step a real accuracy can take; default
    :data:`DEFAULT_EPSILON`.  Values outside [0, 1] (a metric in percent) cannot be bounded: they get the t
    interval, named ``"t"``.  Fewer than two values give no interval; identical values give that point.
    """
    if bounded and log_scale:
        raise ValueError("seed_interval: a metric is either bounded to [0, 1] or on a log scale, not both")
    xs = [float(v) for v in values if v is not None]
    if log_scale:
        return log_t_interval(xs, confidence) if all(not x <= 0.0 for x in xs) else t_interval(xs, confidence)
    if not bounded or any(math.isfinite(x) and not 0.0 <= x <= 1.0 for x in xs):
        return t_interval(xs, confidence)
    eps = DEFAULT_EPSILON if epsilon is None else epsilon
    if len(xs) >= BOOTSTRAP_MIN_N and all(math.isfinite(x) for x in xs) and any(x != xs[0] for x in xs):
        found = bootstrap_interval(xs, confidence)
        if found is not None:
            return found
    return logit_t_interval(xs, confidence, eps)


def seed_interval_method(n: int, bounded: bool, log_scale: bool = False) -> str:
    """The method :func:`seed_interval` uses for ``n`` values (before any degenerate fallback)."""
    if log_scale:
        return LOG_T
    if not bounded:
        return T
    return BCA if n >= BOOTSTRAP_MIN_N else LOGIT_T


# ---------------------------------------------------------------------------------------- test-set noise


def z_critical(confidence: float = CONFIDENCE) -> float:
    """Two-sided normal critical value ``z_{(1+c)/2}``: 1.95996 at 95 %."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, total: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of a proportion: one run's test-set sampling noise.

    With ``p̂ = successes/total``, ``N = total`` and ``z = z_{(1+c)/2}``::

        centre = (p̂ + z²/(2N)) / (1 + z²/N)
        half   = z / (1 + z²/N) · √(p̂(1 − p̂)/N + z²/(4N²))

    (Wilson, JASA 1927).  Unlike the Wald interval ``p̂ ± z√(p̂(1−p̂)/N)`` it never leaves [0, 1] and does not
    collapse to a point at p̂ = 0 or 1.  ``successes`` may be fractional (an accuracy times its count, rounded
    by floating point).  No interval (None) without a positive count.
    """
    if total is None or total <= 0 or successes is None or not math.isfinite(successes):
        return Interval(None, None, WILSON)
    n = float(total)
    p = min(max(successes / n, 0.0), 1.0)
    z = z_critical(confidence)
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    return Interval(max(centre - half, 0.0), min(centre + half, 1.0), WILSON)


def mean_iou(intersection: Sequence[float], union: Sequence[float]) -> float | None:
    """Mean over the classes with a non-empty union of intersection/union (torchmetrics' macro mIoU, which leaves
    out a class neither predicted nor present); None when every union is empty."""
    ious = [i / u for i, u in zip(intersection, union, strict=True) if u > 0]
    return sum(ious) / len(ious) if ious else None


def per_image_miou_interval(intersections: Sequence[Sequence[float]], unions: Sequence[Sequence[float]],
                            confidence: float = CONFIDENCE, resamples: int = PER_IMAGE_RESAMPLES) -> Interval:
    """One segmentation run's test-set noise: a percentile bootstrap of its mIoU over test images.

    ``intersections``/``unions`` are (images × classes) pixel counts.  mIoU is not a mean over images (each class's
    IoU is a ratio of sums over all images), so the images are resampled with replacement, the counts summed, and
    :func:`mean_iou` taken per resample; the interval is the ``(1 ± c)/2`` quantiles of those (fixed seed).  The
    percentile bootstrap suits here what it does not suit across seeds: a test split has hundreds of images.  No
    interval below two images.
    """
    import numpy as np

    inter, union = np.asarray(intersections, dtype=float), np.asarray(unions, dtype=float)
    images = inter.shape[0] if inter.ndim == 2 else 0
    if images < 2 or union.shape != inter.shape:
        return Interval(None, None, PER_IMAGE_BOOTSTRAP)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    weights = rng.multinomial(images, np.full(images, 1.0 / images), size=resamples).astype(float)  # draws per image
    summed_i, summed_u = weights @ inter, weights @ union  # (resamples, classes)
    present = summed_u > 0
    ious = np.divide(summed_i, summed_u, out=np.zeros_like(summed_i), where=present)
    counted = present.sum(axis=1)
    miou = ious.sum(axis=1)[counted > 0] / counted[counted > 0]
    if miou.size == 0:
        return Interval(None, None, PER_IMAGE_BOOTSTRAP)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(miou, [tail, 1.0 - tail])
    return Interval(float(low), float(high), PER_IMAGE_BOOTSTRAP)


# ------------------------------------------------------------------------------------------ paired tests


@dataclass(frozen=True)
class PairedTest:
    """An arm against the baseline on the seeds both completed: the per-seed differences ``arm − baseline``."""

    n: int  # number of seed pairs
    mean: float | None  # mean paired difference (arm − baseline)
    low: float | None  # t interval of the mean difference
    high: float | None
    p_value: float | None  # two-sided paired t-test p: the primary test
    p_exact: float | None  # exact two-sided sign-flip permutation p over all 2^n sign patterns (None if n < 2)
    p_holm: float | None = None  # Holm-adjusted p_value within its family (filled by with_holm)
    method: str = PAIRED_T

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (touching it does not)."""
        return self.low is not None and self.high is not None and (self.low > 0.0 or self.high < 0.0)


def _t_test_p(xs: Sequence[float]) -> float:
    """Two-sided one-sample t test of mean 0 (``scipy.stats.ttest_1samp``, i.e. ``ttest_rel`` on the pairs).

    Identical differences have no spread: p is 1 when they are all 0 and 0 otherwise (a deterministic
    difference, e.g. of parameter counts), where scipy would divide by zero.
    """
    if all(x == xs[0] for x in xs):
        return 1.0 if xs[0] == 0 else 0.0
    from scipy import stats

    return float(stats.ttest_1samp(xs, 0.0).pvalue)


def sign_flip_p(differences: Sequence[float]) -> float | None:
    """Two-sided sign-flip permutation p: the share of sign patterns ``s ∈ {±1}^n`` with ``|Σ sᵢdᵢ| ≥ |Σ dᵢ|``.

    Under the null (arm and baseline exchangeable within a seed) each difference is as likely to have either
    sign, so all 2^n patterns are equally likely; the observed one counts, so p ≥ 2^(1−n).  (The sum and the t
    statistic order the patterns alike, since Σdᵢ² does not change with the signs.)  Exact enumeration up to
    :data:`EXACT_SIGN_FLIP_MAX_N` pairs, a fixed-seed Monte Carlo estimate over :data:`MONTE_CARLO_FLIPS`
    patterns beyond.  None below two pairs or with a non-finite difference.
    """
    xs = [float(d) for d in differences]
    n = len(xs)
    if n < 2 or not all(math.isfinite(x) for x in xs):
        return None
    import numpy as np

    d = np.asarray(xs)
    observed = abs(d.sum())
    tolerance = 1e-12 * max(float(np.abs(d).sum()), 1e-300)  # the same sum reached in another order
    if n <= EXACT_SIGN_FLIP_MAX_N:
        low_bits = min(n, 16)
        codes = np.arange(2**low_bits)[:, None] >> np.arange(low_bits)[None, :] & 1
        signs_low = 1 - 2 * codes  # every pattern of the first low_bits signs
        partial = signs_low @ d[:low_bits]
        hits = 0
        for high in range(2 ** (n - low_bits)):
            rest = sum(-x if high >> i & 1 else x for i, x in enumerate(xs[low_bits:]))
            hits += int(np.count_nonzero(np.abs(partial + rest) >= observed - tolerance))
        return hits / 2**n
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    signs = rng.choice([-1.0, 1.0], size=(MONTE_CARLO_FLIPS, n))
    hits = int(np.count_nonzero(np.abs(signs @ d) >= observed - tolerance))
    return (hits + 1) / (MONTE_CARLO_FLIPS + 1)


def paired_test(differences: Sequence[float], confidence: float = CONFIDENCE,
                bounds: tuple[float, float] | None = None) -> PairedTest:
    """Paired comparison from the per-seed differences ``arm − baseline``.

    The interval is the t interval of the mean difference, ``d̄ ± t_{(1+c)/2, n−1}·s_d/√n`` (a difference of two
    [0, 1] metrics is not bounded to [0, 1], so no logit); ``bounds`` (``(-1, 1)`` for such a difference) cuts it
    to where every difference lies, which keeps its coverage, since the true difference is inside them too.
    ``p_value`` is the two-sided paired t test, ``p_exact`` the sign-flip permutation p (:func:`sign_flip_p`).
    One pair gives a difference and nothing else; none gives nothing.
    """
    xs = [float(d) for d in differences if d is not None]
    n = len(xs)
    if n == 0:
        return PairedTest(0, None, None, None, None, None)
    mean = sum(xs) / n
    if n == 1:
        return PairedTest(1, mean, None, None, None, None)
    if not all(math.isfinite(x) for x in xs):
        return PairedTest(n, mean, math.nan, math.nan, math.nan, None)
    interval = t_interval(xs, confidence)
    low, high = interval.low, interval.high
    if bounds is not None and low is not None and high is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return PairedTest(n, mean, low, high, _t_test_p(xs), sign_flip_p(xs))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (``statsmodels`` ``multipletests(method="holm")``) of one family.

    Sorted ascending, the i-th smallest p (1-based) becomes ``max_{j ≤ i} min(1, (m − j + 1)·p_(j))``; rejecting
    where the adjusted p ≤ α controls the family-wise error rate at α (Holm, Scand. J. Statist. 1979).  None (and
    NaN) are no test: they stay as they are and do not count in ``m``.
    """
    kept = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    adjusted: list[float | None] = list(p_values)
    if not kept:
        return adjusted
    from statsmodels.stats.multitest import multipletests

    corrected = multipletests([float(p_values[i]) for i in kept], method="holm")[1]  # type: ignore[arg-type]
    for i, value in zip(kept, corrected, strict=True):
        adjusted[i] = float(value)
    return adjusted


def with_holm(tests: Sequence[PairedTest]) -> list[PairedTest]:
    """The same tests with ``p_holm`` filled; the family is the whole list (the k − 1 arms against one baseline)."""
    adjusted = holm([test.p_value for test in tests])
    return [replace(test, p_holm=p) for test, p in zip(tests, adjusted, strict=True)]


# ----------------------------------------------------------------------------------------------- floors


def sign_flip_floor(n: int) -> float:
    """Smallest two-sided p an exact sign-flip test over ``n`` pairs can give: ``2^(1−n)`` (1 for n ≤ 1)."""
    return 1.0 if n <= 1 else 2.0 ** (1 - n)


def sign_flip_min_seeds(alpha: float = 0.05, family: int = 1) -> int:
    """Smallest ``n`` whose floor passes Holm's first step, ``2^(1−n) ≤ alpha/family``: 6 for one test at 0.05,
    7 for a family of 3 (the first step of Holm is Bonferroni's ``α/m``)."""
    if not 0.0 < alpha < 1.0 or family < 1:
        raise ValueError(f"alpha must lie in (0, 1) and family be at least 1, got {alpha} and {family}")
    n = 2
    while sign_flip_floor(n) > alpha / family:
        n += 1
    return n


__all__ = [
    "BCA", "BOOTSTRAP_MIN_N", "CONFIDENCE", "LOGIT_T", "LOG_T", "PAIRED_T", "PER_IMAGE_BOOTSTRAP", "T", "WILSON",
    "Interval", "PairedTest", "bootstrap_interval", "geometric_mean", "holm", "log_t_interval", "logit_t_interval",
    "mean_iou", "paired_test",
    "per_image_miou_interval", "seed_interval",
    "seed_interval_method", "sign_flip_floor", "sign_flip_min_seeds", "sign_flip_p", "t_interval",
    "wilson_interval", "with_holm", "z_critical",
]
