"""Claims: the statements a section's verdict rests on, each judged against measured numbers.

Two kinds of claim, judged two ways:

* **Exact checks** (:func:`greater`, :func:`ratio_below`, :func:`within`, :func:`exact`) compare numbers that do
  not vary with the seed: parameter counts, receptive fields, a layer's initialisation, a formula.  They hold
  or they do not.
* **Comparative claims** (:func:`paired`) compare trained arms, whose numbers move with the seed.  Each is the
  per-seed differences ``left − right`` of two arms *paired by seed* (the same initialisation stream and data
  order on both sides), claimed to exceed a ``margin`` (0: "left is larger").  :func:`judge` decides them as one
  family per section: the paired t-test of ``difference − margin`` (:func:`experiments.reporting.inference.
  paired_test`), its p-value Holm-adjusted over the section's comparative claims, and its t interval at the
  Bonferroni level ``1 − α/m``.  A claim **holds** only when the Holm-adjusted p < α *and* that interval lies
  above the margin; it is **contradicted** when the interval lies below the margin (with Holm p < α); otherwise
  it is **not resolved at n seeds**, with the seeds the planner (:func:`experiments.reporting.planning.
  pairs_needed`, power 0.8 at level α/m) says the observed effect would need. Differences without any spread
  (every seed the same Δ, e.g. two arms both at chance) make the t-test degenerate; such a claim is decided by the
  exact sign-flip p instead (which cannot pass below 6 seeds).  Holm and a Bonferroni interval
  agree here (the interval excludes the margin exactly when the unadjusted p < α/m, which implies Holm's
  p < α); both are required so a later change of interval method cannot loosen the verdict.

Margins are part of the statement and printed with it on the page, so "holds" means the same thing to the reader
as to ``tests/test_classics.py``. A claim whose numbers are missing (a run failed) is *not checked*, never
silently true.

*Asserted* claims are the framework's guarantees: ``tests/test_classics.py`` fails when one is contradicted,
does not hold or cannot be checked at the page's budget (a claim the budget's seeds cannot resolve is reported
in grey, not failed). The others (``asserted=False``) compare with a published result the small budget may or
may not reproduce; the page reports them either way and they shape the verdict, but no test demands them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from experiments.reporting.inference import PairedTest

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RESOLVED, UNCHECKED = (
    "reproduced", "partly", "not reproduced", "not resolved", "not checked")
#: a claim's status
HOLDS, FAILS, CONTRADICTED, UNRESOLVED, NOT_CHECKED = (
    "holds", "does not hold", "contradicted", "not resolved", "not checked")
#: family-wise error rate of each section's comparative claims
ALPHA = 0.05


@dataclass(frozen=True)
class Judgement:
    """The paired test behind a comparative claim, as :func:`judge` decided it."""

    n: int
    mean: float | None  # mean of left − right over the paired seeds
    low: float | None  # Bonferroni-level (1 − α/m) paired t interval of that mean
    high: float | None
    margin: float
    confidence: float
    family: int  # m: comparative claims in the section's family
    p_value: float | None  # two-sided paired t p of (difference − margin)
    p_holm: float | None
    p_exact: float | None  # sign-flip permutation p (a check; cannot reach α below 6 seeds)
    seeds_needed: int | None = None  # planner: pairs for power 0.8 at level α/m for the observed effect
    seeds: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("n", "mean", "low", "high", "margin", "confidence", "family",
                                              "p_value", "p_holm", "p_exact", "seeds_needed")} | {
            "seeds": list(self.seeds)}


@dataclass(frozen=True)
class Claim:
    """A statement, its status, and the evidence printed with it."""

    statement: str
    holds: bool | None
    evidence: str
    asserted: bool = True
    #: HOLDS, FAILS, CONTRADICTED, UNRESOLVED or NOT_CHECKED; empty: derived from ``holds`` (exact checks)
    status: str = ""
    judgement: Judgement | None = None

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", {True: HOLDS, False: FAILS, None: NOT_CHECKED}[self.holds])

    @property
    def mark(self) -> str:
        return self.status

    @property
    def comparative(self) -> bool:
        return self.judgement is not None

    def as_dict(self) -> dict[str, object]:
        return {"statement": self.statement, "holds": self.holds, "status": self.status, "evidence": self.evidence,
                "asserted": self.asserted, "judgement": None if self.judgement is None else self.judgement.as_dict()}


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------------- exact checks


def greater(statement: str, left: float | None, right: float | None, margin: float = 0.0, *,
            names: tuple[str, str] = ("", ""), digits: int = 3, asserted: bool = True) -> Claim:
    """``left > right + margin`` for numbers that do not depend on the seed; ``names`` label them."""
    shown = f"{names[0]} {_num(left, digits)} vs {names[1]} {_num(right, digits)}".strip()
    if margin:
        shown += f" (margin {_num(margin, digits)})"
    if left is None or right is None:
        return Claim(statement, None, shown + ": a number is missing", asserted)
    return Claim(statement, left > right + margin, shown, asserted)


def ratio_below(statement: str, numerator: float | None, denominator: float | None, bound: float, *,
                names: tuple[str, str] = ("", ""), asserted: bool = True) -> Claim:
    """``numerator / denominator < bound`` (for quantities spanning orders of magnitude)."""
    shown = f"{names[0]} {_num(numerator, 3)} / {names[1]} {_num(denominator, 3)}".strip()
    if numerator is None or not denominator:
        return Claim(statement, None, shown + ": a number is missing", asserted)
    ratio = numerator / denominator
    return Claim(statement, ratio < bound, f"{shown} = {_num(ratio, 3)} (bound {_num(bound, 3)})", asserted)


def within(statement: str, measured: float | None, published: float, relative: float) -> Claim:
    """``|measured − published| ≤ relative · published``."""
    if measured is None:
        return Claim(statement, None, "no measurement")
    error = abs(measured - published) / abs(published)
    return Claim(statement, error <= relative,
                 f"{_num(measured, 4)} vs {_num(published, 4)}: {error:.1%} off (tolerance {relative:.0%})")


def exact(statement: str, measured: Sequence[object] | None, expected: Sequence[object]) -> Claim:
    if measured is None:
        return Claim(statement, None, "no measurement")
    return Claim(statement, list(measured) == list(expected), f"{list(measured)} vs {list(expected)}")


# ------------------------------------------------------------------------------------- comparative claims


@dataclass(frozen=True)
class Paired:
    """A comparative claim before :func:`judge`: per-seed ``(left, right)``, claimed ``left − right > margin``."""

    statement: str
    pairs: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    margin: float = 0.0
    names: tuple[str, str] = ("", "")
    digits: int = 3
    asserted: bool = True
    #: how the difference is named in the evidence (e.g. "Δ log10 ratio")
    unit: str = ""

    @property
    def differences(self) -> list[float]:
        return [left - right for _, (left, right) in sorted(self.pairs.items())]


def paired(statement: str, pairs: Mapping[int, tuple[float | None, float | None]] | None, margin: float = 0.0, *,
           names: tuple[str, str] = ("", ""), digits: int = 3, asserted: bool = True, unit: str = "") -> Paired:
    """A comparative claim: ``left − right > margin`` on the seeds both sides have (``pairs``: seed -> values,
    e.g. from :func:`experiments.classics.evidence.paired_values`); a seed missing a value is left out."""
    kept = {int(seed): (float(a), float(b)) for seed, (a, b) in (pairs or {}).items()
            if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)}
    return Paired(statement, kept, margin, names, digits, asserted, unit)


def one_sample(statement: str, values: Mapping[int, float | None] | None, bound: float, *, name: str = "value",
               digits: int = 3, asserted: bool = True) -> Paired:
    """``value > bound`` for a per-seed quantity of one arm (e.g. its train − val gap), tested like a paired claim
    whose right side is 0 and whose margin is ``bound``."""
    return paired(statement, {s: (v, 0.0) for s, v in (values or {}).items()}, bound, digits=digits,
                  asserted=asserted, unit=name)


def _needed(differences: Sequence[float], margin: float, level: float) -> int | None:
    """Seeds the planner says the observed effect needs at level ``level`` (None: no spread or no effect)."""
    from experiments.reporting import planning

    if len(differences) < 2:
        return None
    mean = sum(differences) / len(differences)
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (len(differences) - 1))
    effect = mean - margin
    if abs(effect) <= 1e-12 * max(1.0, abs(mean), abs(margin)):
        return None
    with warnings.catch_warnings():  # statsmodels' root finder warns before the planner's own search takes over
        warnings.simplefilter("ignore")
        return planning.pairs_needed(effect, sd, alpha=level, power=planning.POWER)


def _decide(item: Paired, test: PairedTest, family: int, confidence: float, alpha: float) -> Claim:
    names = item.names
    n, digits = test.n, item.digits
    shift = item.margin
    mean = None if test.mean is None else test.mean + shift
    low = None if test.low is None else test.low + shift
    high = None if test.high is None else test.high + shift
    label = item.unit or "Δ"
    lhs = f"{names[0]} − {names[1]}" if names[0] and names[1] else ""
    head = f"{label} ({lhs}) = " if lhs else f"{label} = "
    text = head + _num(mean, digits)
    seeds = tuple(sorted(item.pairs))
    if n == 0:
        judgement = Judgement(0, None, None, None, shift, confidence, family, None, None, None, None, seeds)
        return Claim(item.statement, None, "no paired seeds: a number is missing", item.asserted, NOT_CHECKED,
                     judgement)
    needed = _needed(item.differences, shift, 1.0 - confidence) if n >= 2 else None
    judgement = Judgement(n, mean, low, high, shift, confidence, family, test.p_value, test.p_holm, test.p_exact,
                          needed, seeds)
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{_num(low, digits)}, {_num(high, digits)}]"
    text += f" ({100 * confidence:.3g} % paired-t interval, n={n} seeds"
    if shift:
        text += f"; margin {_num(shift, digits)}"
    text += ")"
    if test.p_value is not None and math.isfinite(test.p_value):
        degenerate = _no_spread(item)
        text += (f"; no spread across seeds, so the sign-flip p = {test.p_value:.2g} decides, Holm p = "
                 f"{test.p_holm:.2g} over {family}" if degenerate else
                 f"; p = {test.p_value:.2g}, Holm p = {test.p_holm:.2g} over {family}")
        if test.p_exact is not None and not degenerate:
            text += f", sign-flip p = {test.p_exact:.2g}"
    p_ok = test.p_holm is not None and math.isfinite(test.p_holm) and test.p_holm < alpha
    if p_ok and low is not None and low > shift:
        return Claim(item.statement, True, text, item.asserted, HOLDS, judgement)
    if p_ok and high is not None and high < shift:
        return Claim(item.statement, False, text, item.asserted, CONTRADICTED, judgement)
    plan = (f"; the planner: ≈ {needed} seeds would resolve this effect" if needed is not None
            else "; the planner: no spread or no effect to plan from" if n >= 2 else "")
    return Claim(item.statement, None, text + f"; not resolved at {n} seed{'s' if n != 1 else ''}" + plan,
                 item.asserted, UNRESOLVED, judgement)


def _no_spread(item: Paired) -> bool:
    differences = item.differences
    return len(differences) >= 2 and all(d == differences[0] for d in differences)


def judge(items: Sequence[Claim | Paired], alpha: float = ALPHA) -> list[Claim]:
    """Decide a section's claims: exact checks pass through; the comparative ones (:class:`Paired`) form one family
    of ``m`` tests (the claims with at least two paired seeds), Holm-adjusted, each with its Bonferroni-level
    (``1 − α/m``) paired t interval."""
    from experiments.reporting.inference import paired_test, with_holm

    family = [item for item in items if isinstance(item, Paired)]
    tested = sum(1 for item in family if len(item.pairs) >= 2)  # Holm counts only claims with a p-value; so does m
    m = max(1, tested)
    confidence = 1.0 - alpha / m
    tests = [paired_test([d - item.margin for d in item.differences], confidence) for item in family]
    # differences without spread (two seeds both at chance: Δ exactly 0.000 twice) make the t-test degenerate (its
    # p is 0 or 1 by convention); such a claim is decided by the exact sign-flip p instead, which knows n is small
    tests = with_holm([replace(test, p_value=test.p_exact) if _no_spread(item) and test.n >= 2 else test
                       for item, test in zip(family, tests, strict=True)])
    decided = iter(_decide(item, test, m, confidence, alpha) for item, test in zip(family, tests, strict=True))
    return [next(decided) if isinstance(item, Paired) else item for item in items]


# --------------------------------------------------------------------------------------------- verdicts


def tally(claims: Sequence[Claim]) -> str:
    """``3 of 5 claims hold, 1 not resolved, 1 contradicted``."""
    counts = {status: sum(1 for c in claims if c.status == status)
              for status in (HOLDS, UNRESOLVED, CONTRADICTED, FAILS, NOT_CHECKED)}
    text = f"{counts[HOLDS]} of {len(claims)} claims hold"
    extra = [f"{counts[s]} {s}" for s in (UNRESOLVED, CONTRADICTED, FAILS, NOT_CHECKED) if counts[s]]
    return text + (", " + ", ".join(extra) if extra else "")


def verdict(claims: Sequence[Claim]) -> str:
    """Reproduced when every claim holds; not reproduced when none holds and some is contradicted or fails; not
    resolved when none holds and none is contradicted but some await seeds; partly in between; not checked when
    nothing could be checked."""
    statuses = [c.status for c in claims]
    if not statuses or all(s == NOT_CHECKED for s in statuses):
        return UNCHECKED
    if all(s == HOLDS for s in statuses):
        return REPRODUCED
    if HOLDS not in statuses:
        if CONTRADICTED in statuses or FAILS in statuses:
            return NOT_REPRODUCED
        return NOT_RESOLVED
    return PARTLY
