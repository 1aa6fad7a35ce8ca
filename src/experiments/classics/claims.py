"""Claims: the stated orderings a section's verdict rests on, each checked against measured numbers.

A claim is one sentence ("plain-56 ends with a higher training error than plain-20"), the two numbers it
compares, and the margin the difference must clear. Margins are part of the statement and printed with it
on the page, so "holds" always means the same thing to the reader as to ``tests/test_classics.py``. A claim
whose numbers are missing (a run failed) is *unchecked*, never silently true.

*Asserted* claims are the framework's guarantees: ``tests/test_classics.py`` fails when one stops holding at
the page's budget. The others (``asserted=False``) compare with a published result the small budget may or
may not reproduce; the page reports them either way and they shape the verdict, but no test demands them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

REPRODUCED, PARTLY, NOT_REPRODUCED, UNCHECKED = "reproduced", "partly", "not reproduced", "not checked"


@dataclass(frozen=True)
class Claim:
    """A stated ordering and whether the measured numbers satisfy it."""

    statement: str
    holds: bool | None
    evidence: str
    asserted: bool = True

    @property
    def mark(self) -> str:
        return {True: "holds", False: "does not hold", None: "not checked"}[self.holds]

    def as_dict(self) -> dict[str, object]:
        return {"statement": self.statement, "holds": self.holds, "evidence": self.evidence, "asserted": self.asserted}


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def greater(statement: str, left: float | None, right: float | None, margin: float = 0.0, *,
            names: tuple[str, str] = ("", ""), digits: int = 3, asserted: bool = True) -> Claim:
    """``left > right + margin``; ``names`` label the two numbers in the evidence."""
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


def verdict(claims: Sequence[Claim]) -> str:
    """Reproduced when every checked claim holds, not reproduced when none does, partly in between."""
    checked = [c.holds for c in claims if c.holds is not None]
    if not checked:
        return UNCHECKED
    if all(checked):
        return REPRODUCED if len(checked) == len(claims) else PARTLY
    return NOT_REPRODUCED if not any(checked) else PARTLY
