"""How many seeds a comparison needs: ``python -m experiments.report DIR --plan [--min-effect X]``, and the
group-sequential rule ``hydra/sweeper=seeds`` adds seeds by.

**What is planned.**  Every arm is compared with the baseline arm by the differences ``arm − baseline`` paired
by seed (:mod:`~experiments.reporting.comparison`); the ``k − 1`` comparisons of a sweep with ``k`` arms are one
family, corrected with Holm.  The primary test is the paired t-test on those differences
(:func:`~experiments.reporting.inference.paired_test`), so the seeds a comparison needs are the pairs a one-sample
t-test on the differences needs to reach the target power, with the effect size ``d = |Δ| / s_d`` (``s_d``: the
observed standard deviation of the paired differences).

**At which level.**  Holm rejects the comparison with the smallest p at ``α / m`` (``m = k − 1``) and the others
at levels up to ``α``; which step a comparison lands on depends on the others' p-values.  Planning at ``α / m``
(Holm's strictest step, i.e. Bonferroni) guarantees the seeds suffice whatever the others do; it over-asks by a
seed or two when ``m`` is small.

**Why two effects.**  Power computed from the observed effect is optimistic (a comparison that looks big at
``n = 3`` is partly big by luck: the winner's curse), and ``s_d`` from three pairs is itself noisy.  So the plan
also says how many seeds would resolve the *smallest effect of interest* the user names (``--min-effect``, in the
metric's units: ``0.01`` = one accuracy point), with the same observed ``s_d``.

**The power.**  ``P(|T| > t_{1−α'/2, n−1})`` with ``T`` noncentral t (``n − 1`` degrees of freedom, noncentrality
``d·√n``).  statsmodels' ``TTestPower.solve_power`` (imported only when a plan is made) solves it for a
continuous ``n`` and can return a wrong root or NaN when very few pairs suffice (``d = 5`` at ``α' = 0.025``:
2.2, where the power is 0.32), so its answer is only the starting point of a search over whole numbers of pairs,
each checked with the noncentral t itself (:func:`_power`).

**The exact check.**  A sign-flip (permutation) test of ``n`` pairs cannot give a two-sided p below
``2^(1−n)``, whatever the data (:func:`~experiments.reporting.inference.sign_flip_floor`); the plan prints the
seed floor below which it cannot pass Holm over the family.

**Adding seeds until resolved** (:class:`SequentialRule`, used by ``hydra/sweeper=seeds``): look at the data after
``start``, ``start + step``, ... seeds up to the cap, and stop a comparison at the first look where its paired
t-interval at level ``1 − α/(m·L)`` excludes 0 (``L``: the number of planned looks).  Repeated looks at
accumulating data inflate the error rate of a fixed-n test; splitting ``α`` equally over the ``m`` comparisons
and the ``L`` looks bounds the probability that any comparison with no true difference is ever declared resolved
by ``α`` (the union bound), whatever the correlation between looks.  This is the Bonferroni group-sequential
boundary (Jennison & Turnbull 2000, *Group Sequential Methods with Applications to Clinical Trials*, Chapman &
Hall/CRC): more conservative than Pocock's (1977) or O'Brien & Fleming's (1979) boundaries, which assume normal
statistics with equal information increments, but valid at any n, with t statistics and unequal steps.
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from experiments.reporting.aggregate import Group, Summary
    from experiments.reporting.inference import PairedTest
    from experiments.reporting.runs import RunResult

PLAN_OPTION, MIN_EFFECT_OPTION = "--plan", "--min-effect"
#: the familywise error rate of the comparisons and the power the plan aims at
ALPHA, POWER = 0.05, 0.8
#: beyond this many pairs the plan says "more than" instead of searching further
MAX_PAIRS = 10**7
#: the rule's name and reference, printed by the sweeper and written to its JSON
SEQUENTIAL_RULE = "Bonferroni group-sequential boundary: alpha split equally over the comparisons and the planned looks"
SEQUENTIAL_REFERENCE = ("Jennison & Turnbull 2000, Group Sequential Methods with Applications to Clinical Trials, "
                        "Chapman & Hall/CRC")


# ----------------------------------------------------------------------------------------- command line


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{MIN_EFFECT_OPTION}={text} is invalid: it is the smallest difference that matters, in the metric's "
            f"units; give a positive number, e.g. {MIN_EFFECT_OPTION} 0.01 for one accuracy point")
    return value


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """``--plan`` and ``--min-effect X`` on the report's parser (nothing heavy is imported here)."""
    parser.add_argument(
        PLAN_OPTION, action="store_true",
        help=("print, per comparison of an arm with the baseline, the paired difference of the primary metric with "
              "its interval, p and Holm p, and how many seeds (pairs) a paired t-test needs to resolve it at "
              "power 0.8 and Holm's strictest level alpha/(k-1): for the observed difference and for "
              f"{MIN_EFFECT_OPTION}; writes nothing"))
    parser.add_argument(
        MIN_EFFECT_OPTION, type=_positive_float, default=None, metavar="X",
        help=("with --plan: the smallest difference of the primary metric that matters to you, in its units "
              "(0.01 = one accuracy point); the plan says how many seeds would resolve it, since the observed "
              "difference makes an optimistic plan"))


# ------------------------------------------------------------------------------------------------ power


def _power(effect_size: float, pairs: int, alpha: float) -> float:
    """``P(|T| > c)``, ``c = t_{1−α/2, n−1}``, for ``T`` noncentral t with ``n − 1`` degrees of freedom and
    noncentrality ``δ = d·√n``: the power of the two-sided one-sample t-test on ``n`` paired differences.

    scipy's ``nct`` first; where it gives NaN (a large ``δ`` on few degrees of freedom: ``d = 23``, ``n = 2``;
    statsmodels' ``TTestPower.power`` is NaN there too), the definition ``T = (Z + δ)/√(V/ν)``, ``V ~ χ²_ν``,
    integrated over V's quantiles: ``∫₀¹ Φ(δ − c·s(u)) + Φ(−δ − c·s(u)) du`` with ``s(u) = √(F⁻¹_χ²ν(u)/ν)``.
    """
    from scipy import integrate, stats

    df, shift = pairs - 1, abs(effect_size) * math.sqrt(pairs)
    critical = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    value = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    if math.isfinite(value):
        return value

    def given_spread(u: float) -> float:
        s = math.sqrt(float(stats.chi2.ppf(u, df)) / df)
        return float(stats.norm.cdf(shift - critical * s) + stats.norm.cdf(-shift - critical * s))

    value = float(integrate.quad(given_spread, 0.0, 1.0, limit=200)[0])
    return value if math.isfinite(value) else 0.0


def pairs_needed(effect: float, sd: float, *, alpha: float, power: float = POWER) -> int | None:
    """Smallest whole number of pairs (seeds per arm) at which a two-sided paired t-test at level ``alpha`` detects
    a true mean difference ``effect`` with probability ``power``, given the sd of the differences ``sd``.

    None when it cannot be computed (no spread, or no difference) or exceeds :data:`MAX_PAIRS`.  At least 2: a t
    statistic needs two pairs.  ``TTestPower.solve_power``'s continuous answer is the starting point; the search
    that follows, on the noncentral t (:func:`_power`), makes the answer the smallest *whole* ``n`` whose power
    reaches the target (see the module doc).
    """
    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0 or sd <= 0:
        return None
    import statsmodels.tools.sm_exceptions  # noqa: F401 - imported first: its import turns its warnings "always" on
    from statsmodels.stats.power import TTestPower

    size = abs(effect) / sd
    with warnings.catch_warnings():  # a root-finder that does not converge warns and returns NaN: searched below
        warnings.simplefilter("ignore")
        try:
            guess = float(TTestPower().solve_power(effect_size=size, nobs=None, alpha=alpha, power=power,
                                                   alternative="two-sided"))
        except (ValueError, RuntimeError, ArithmeticError):
            guess = math.nan
    start = math.ceil(guess) if math.isfinite(guess) and 2 <= guess <= MAX_PAIRS else 2
    if _power(size, start, alpha) >= power:  # walk down while one pair fewer still suffices
        while start > 2 and _power(size, start - 1, alpha) >= power:
            start -= 1
        return start
    low, high = start, max(start + 1, 2 * start)  # power(low) < target: double until enough, then bisect
    while _power(size, high, alpha) < power:
        low, high = high, 2 * high
        if high > MAX_PAIRS:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _power(size, middle, alpha) >= power else (middle, high)
    return high


# ------------------------------------------------------------------------------------------------ plans


@dataclass(frozen=True)
class ComparisonPlan:
    """One arm against the baseline: what the seeds show now, and how many would resolve it."""

    arm: str  # the arm's label, as the report names it
    baseline: str
    metric: str
    #: the paired test of the differences with its Holm p over the family (None: fewer than 2 pairs)
    test: PairedTest | None
    sd: float | None  # sample sd of the paired differences
    level: float  # the per-comparison level the seeds are planned at: alpha / family
    family: int  # comparisons in the Holm family (k - 1)
    alpha: float
    power: float
    pairs_observed: int | None  # pairs that would resolve the observed difference
    min_effect: float | None
    pairs_min_effect: int | None  # pairs that would resolve a difference of min_effect

    @property
    def n(self) -> int:
        return 0 if self.test is None else self.test.n

    @property
    def resolved(self) -> bool:
        """Significant after Holm over the family: Holm-adjusted p below alpha."""
        return self.test is not None and self.test.p_holm is not None and self.test.p_holm < self.alpha


def seed_differences(arm: Sequence[RunResult], baseline: Sequence[RunResult], column: str) -> list[float]:
    """Per-seed ``arm − baseline`` values of ``column`` over the seeds both *completed*, in seed order: the report's
    pairs (:func:`~experiments.reporting.comparison.pair_by_seed`, which averages two runs of one seed first)."""
    from experiments.reporting.aggregate import run_value
    from experiments.reporting.comparison import pair_by_seed

    arm_done = [run for run in arm if run.completed]
    base_done = [run for run in baseline if run.completed]
    return list(pair_by_seed(arm_done, base_done, [column], run_value).differences[column])


def _paired(arms: Sequence[Group], base: Group, metric: str) -> tuple[list[list[float]], list[PairedTest]]:
    """Each arm's differences and Holm-adjusted paired test: the report's own (``summarize`` fills them in each
    arm's pairing), computed the same way where a pairing lacks them."""
    from experiments.reporting.inference import paired_test, with_holm

    pairings = [group.pairing for group in arms]
    if all(p is not None and metric in p.tests and metric in p.differences for p in pairings):
        return ([list(p.differences[metric]) for p in pairings if p is not None],
                [p.tests[metric] for p in pairings if p is not None])
    diffs = [seed_differences(group.completed, base.completed, metric) for group in arms]
    return diffs, with_holm([paired_test(ds) for ds in diffs])


def plan(summary: Summary, *, min_effect: float | None = None, alpha: float = ALPHA, power: float = POWER,
         metric: str | None = None) -> list[ComparisonPlan]:
    """A :class:`ComparisonPlan` per arm other than the baseline, in the report's order, for ``metric`` (default:
    the primary metric), with the report's paired tests (Holm over the arms compared).  Empty when there is no
    baseline or no metric."""
    metric = metric or summary.primary
    base = summary.baseline
    if base is None or metric is None:
        return []
    arms = [group for group in summary.groups if group is not base]
    family = max(1, len(arms))
    level = alpha / family
    plans = []
    for group, ds, test in zip(arms, *_paired(arms, base, metric), strict=True):
        sd = _sd(ds)
        found = test if test.n >= 2 else None
        observed = None if found is None or sd is None else pairs_needed(found.mean, sd, alpha=level, power=power)
        wanted = None if min_effect is None or sd is None else pairs_needed(min_effect, sd, alpha=level, power=power)
        plans.append(ComparisonPlan(arm=group.label, baseline=base.label, metric=metric, test=found, sd=sd,
                                    level=level, family=family, alpha=alpha, power=power, pairs_observed=observed,
                                    min_effect=min_effect, pairs_min_effect=wanted))
    return plans


def _sd(values: Sequence[float]) -> float | None:
    """Sample sd of the differences; None below two, or with a non-finite one (a diverged run's NaN)."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ------------------------------------------------------------------------------------------------- text


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


def _pairs(needed: int | None, have: int, sd: float | None) -> str:
    if sd is None:
        return "— (needs 2 pairs)"
    if sd == 0:
        return "— (no spread)"
    if needed is None:
        return f"> {MAX_PAIRS:,}"
    return f"{needed} (have {have})" if needed > have else f"{needed} (have {have}: enough)"


def plan_text(summary: Summary, *, min_effect: float | None, alpha: float = ALPHA, power: float = POWER) -> str:
    """The ``--plan`` answer as Markdown: one header line with the assumptions, the sign-flip floor, one row per
    comparison, and a line on reading it."""
    from experiments.reporting.inference import sign_flip_floor, sign_flip_min_seeds

    plans = plan(summary, min_effect=min_effect, alpha=alpha, power=power)
    if not plans:
        if summary.baseline is None or summary.primary is None:
            why = "no arm has a completed run with a metric"
        else:
            why = f"the sweep has one arm ({summary.baseline.label}), so there is nothing to compare it with"
        return f"Seed plan: nothing to plan: {why}.\n"
    first = plans[0]
    family, level = first.family, first.level
    holm = f"Holm over the {family} comparisons" if family > 1 else "one comparison, no correction"
    lines = [
        f"Seed plan for {first.metric}: each arm − baseline `{first.baseline}`, paired by seed. Assumes a two-sided "
        f"paired t-test at α = {alpha:g} ({holm}); seeds needed = pairs for power {power:g} at α/{family} = "
        f"{level:.4g} (Holm's strictest step), with the observed sd of the paired differences.",
        "",
    ]
    floor_n = sign_flip_min_seeds(alpha, family)
    have = max(p.n for p in plans)
    lines.append(
        f"Exact sign-flip check: with n pairs its smallest two-sided p is 2^(1−n) ({_p(sign_flip_floor(have))} at "
        f"n = {have}), so it needs at least {floor_n} seeds to pass Holm at α = {alpha:g} over {family}.")
    lines.append("")
    header = ["comparison", "pairs", "Δ (arm − baseline)", "95 % interval", "p", "Holm p", "resolved",
              "seeds for the observed Δ"]
    if min_effect is not None:
        header.append(f"seeds for Δ = ±{min_effect:g}")
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---:", "---:", "---", "---:", "---:", "---",
                                                                 "---:"] + (["---:"] if min_effect is not None else []))
              + "|"]
    for item in plans:
        test = item.test
        interval = "—" if test is None else f"[{_num(test.low)}, {_num(test.high)}]"
        row = [item.arm, str(item.n), _num(None if test is None else test.mean), interval,
               _p(None if test is None else test.p_value), _p(None if test is None else test.p_holm),
               "yes" if item.resolved else "no",
               "—" if test is None else _pairs(item.pairs_observed, item.n, item.sd)]
        if min_effect is not None:
            row.append(_pairs(item.pairs_min_effect, item.n, item.sd))
        lines.append("| " + " | ".join(row) + " |")
    method = next((p.test.method for p in plans if p.test is not None), None)
    lines += ["", "resolved: Holm-adjusted p < α." + (f" Interval: {method}." if method else "") +
              " Seeds are per arm (each seed pairs the arm's run with the baseline's). The observed Δ of few seeds "
              "is large partly by luck and its sd is itself uncertain: plan by the smallest Δ that matters."]
    if min_effect is None:
        lines.append(f"Add {MIN_EFFECT_OPTION} X (the smallest difference that matters, in {first.metric}'s units) "
                     "for the seeds that would resolve it.")
    if any(not p.resolved for p in plans):
        assert summary.baseline is not None
        lines.append("To add seeds until the intervals exclude 0, by a sequential rule that keeps α: python -m "
                     "experiments.train -m <the sweep's overrides> hydra/sweeper=seeds hydra.sweeper.max_seeds=<cap>"
                     + baseline_override(summary.baseline.key) + " (README: How many seeds).")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ adding seeds sequentially


def baseline_override(key: Sequence[str]) -> str:
    """`` 'hydra.sweeper.baseline={k:v,...}'`` naming the arm ``key`` for ``hydra/sweeper=seeds`` (quoted: a comma
    would be brace-expanded by the shell); empty for the arm without overrides (the grid's first arm by default)."""
    from experiments.reporting.runs import parse_override

    if not key:
        return ""
    pairs = ",".join(f"{k}:{v}" for k, v in (parse_override(o) for o in key))
    return f" 'hydra.sweeper.baseline={{{pairs}}}'"


def arm_spec(baseline: object) -> str:
    """``hydra.sweeper.baseline`` as the report's ``--baseline`` text: ``a=1,b=2`` from ``{a: 1, b: 2}`` (how it
    is typed without quotes on the command line), a string as it is."""
    if isinstance(baseline, Mapping):
        return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in baseline.items())
    return str(baseline)



def look_sizes(start: int, step: int, cap: int) -> list[int]:
    """Seeds per arm at each planned look: ``start, start + step, ...`` and the cap itself last.

    >>> look_sizes(3, 2, 10)
    [3, 5, 7, 9, 10]
    """
    if start < 2 or step < 1 or cap < start:
        raise ValueError(f"need 2 <= start <= cap and step >= 1, got start={start}, step={step}, cap={cap}")
    sizes = list(range(start, cap + 1, step))
    if sizes[-1] != cap:
        sizes.append(cap)
    return sizes


def look_level(alpha: float, comparisons: int, looks: int) -> float:
    """The per-test level of the Bonferroni group-sequential boundary: ``α / (m·L)``."""
    return alpha / (max(1, comparisons) * max(1, looks))


@dataclass(frozen=True)
class SequentialRule:
    """Stop each comparison at the first look whose paired t-test has p < ``α/(m·L)``, i.e. whose ``1 − α/(m·L)``
    t-interval excludes 0 (see the module doc for why this keeps the familywise error at most ``α``)."""

    alpha: float
    comparisons: int  # m = k - 1
    looks: int  # L: planned looks, fixed before the first one (start, step and cap fix it)

    @property
    def level(self) -> float:
        return look_level(self.alpha, self.comparisons, self.looks)

    @property
    def confidence(self) -> float:
        """Coverage of the interval each look judges by."""
        return 1.0 - self.level

    def resolves(self, p_value: float | None) -> bool:
        return p_value is not None and math.isfinite(p_value) and p_value < self.level

    def stops(self, p_by_look: Sequence[Mapping[str, float | None]]) -> dict[str, int | None]:
        """Per comparison, the index of the look at which it stopped (resolved), or None (still open at the last
        look given: the cap, if all ``looks`` are given).  A comparison is not looked at again once stopped."""
        if len(p_by_look) > self.looks:
            raise ValueError(f"{len(p_by_look)} looks given, {self.looks} planned: the rule's level assumed "
                             f"{self.looks}")
        stopped: dict[str, int | None] = {}
        for index, ps in enumerate(p_by_look):
            for name, p_value in ps.items():
                if stopped.get(name) is None:
                    stopped[name] = index if self.resolves(p_value) else None
        return stopped
