"""Naming arms, choosing the baseline arm, and each arm's difference from it paired by seed.

An *arm* is one configuration of the sweep (a group of runs that differ only in their seed).  Its name is
the overrides that set it apart, ``activation=relu`` or ``activation=relu,model.depth=20`` on the command
line, :data:`DEFAULT_LABEL` for the arm that sets nothing.

**Pairing by seed.**  Runs with the same seed share their initialisation stream and data order, so the
difference ``arm − baseline`` on one seed cancels the seed's luck; the report averages those per-seed
differences instead of subtracting two means.  Only seeds both arms completed form pairs; the others are
*dropped* from that comparison and listed in the report.  Runs without a recorded seed cannot be paired.
Two completed runs of one arm with the same seed (the same sweep reported from two directories) are
averaged into one value before pairing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from experiments.errors import ConfigError
from experiments.reporting.inference import PairedTest
from experiments.reporting.runs import RunResult, parse_override
from experiments.reporting.stats import Stat, mean_std

DEFAULT_LABEL = "(default)"
BASELINE_OPTION = "--baseline"
_OPENERS, _CLOSERS = "[{(", "]})"


def format_label(key: Sequence[str]) -> str:
    """Human label ``a=1, b=2`` (keys sorted); the empty key is the sweep's default configuration."""
    return ", ".join(key) if key else DEFAULT_LABEL


def cli_name(key: Sequence[str]) -> str:
    """How to name the arm on the command line: ``a=1,b=2``."""
    return ",".join(key) if key else DEFAULT_LABEL


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at separators outside brackets and quotes, so ``model.channels=[16,32]`` stays whole."""
    parts, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth = max(depth - 1, 0)
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def parse_arm_spec(text: str, option: str = BASELINE_OPTION) -> list[tuple[str, str]]:
    """``a=1,b=2`` -> ``[("a", "1"), ("b", "2")]``; :data:`DEFAULT_LABEL` -> ``[]`` (the arm without overrides)."""
    if text.strip() == DEFAULT_LABEL:
        return []
    settings = []
    for part in split_top_level(text):
        key, value = parse_override(part)
        if "=" not in part or not key:
            raise ConfigError(
                option,
                text,
                f"{part!r} is not a key=value override",
                f"name the arm by its overrides, e.g. {option} activation=relu or {option} a=1,b=2",
            )
        settings.append((key, value))
    return settings


def same_value(a: str, b: str) -> bool:
    """Override values are equal as typed, or as numbers (``0.1`` names the same arm as ``1e-1``)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def find_arm(
    spec: str, arms: Sequence[Sequence[str]], constants: Iterable[str] = (), option: str = BASELINE_OPTION
) -> int:
    """Index of the one arm whose overrides (its key plus the sweep constants) include every setting of ``spec``.

    Raises :class:`~experiments.errors.ConfigError` when no arm or more than one arm matches.
    """
    wanted = parse_arm_spec(spec, option)
    shared = [parse_override(o) for o in constants]
    matches = []
    for index, key in enumerate(arms):
        if not wanted:
            if not key:
                matches.append(index)
            continue
        have = [parse_override(o) for o in key] + shared
        if all(any(k == wk and same_value(v, wv) for k, v in have) for wk, wv in wanted):
            matches.append(index)
    names = [cli_name(key) for key in arms]
    if not matches:
        raise ConfigError(option, spec, "no arm of this sweep has these overrides", "name one of: " + "; ".join(names))
    if len(matches) > 1:
        raise ConfigError(
            option,
            spec,
            f"it matches {len(matches)} arms ({'; '.join(names[i] for i in matches)})",
            "add overrides until it names exactly one",
        )
    return matches[0]


# -------------------------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pairing:
    """One arm against the baseline: which seeds formed pairs, which were dropped, and the differences."""

    seeds: list[int]  # seeds both arms completed: the pairs
    dropped_arm: list[int]  # the arm completed them, the baseline did not
    dropped_baseline: list[int]  # the baseline completed them, the arm did not
    unseeded: int = 0  # completed runs of the arm without a recorded seed
    repeated: list[int] = field(default_factory=list)  # seeds with several completed runs in one side
    diffs: dict[str, Stat] = field(default_factory=dict)  # per column: Stat of the per-seed differences
    #: per column: the per-seed differences themselves, in seed order (what the tests are computed from)
    differences: dict[str, list[float]] = field(default_factory=dict)
    #: per metric column: the paired test against the baseline, Holm-adjusted over the arms (filled by summarize)
    tests: dict[str, PairedTest] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every completed run of the arm, and every seed of the baseline, took part in a pair."""
        return not (self.dropped_arm or self.dropped_baseline or self.unseeded)


def _by_seed(runs: Sequence[RunResult], value: Callable[[RunResult, str], float | None], column: str) -> dict:
    collected: dict[int, list[float]] = {}
    for run in runs:
        number = value(run, column)
        if run.seed is not None and number is not None:
            collected.setdefault(run.seed, []).append(number)
    return {seed: sum(xs) / len(xs) for seed, xs in collected.items()}


def _repeated(runs: Sequence[RunResult]) -> set[int]:
    seen: set[int] = set()
    twice: set[int] = set()
    for run in runs:
        if run.seed is not None:
            (twice if run.seed in seen else seen).add(run.seed)
    return twice


def pair_by_seed(
    arm: Sequence[RunResult],
    baseline: Sequence[RunResult],
    columns: Sequence[str],
    value: Callable[[RunResult, str], float | None],
) -> Pairing:
    """Per-seed differences ``arm − baseline`` for each column over the seeds both completed.

    ``arm`` and ``baseline`` are completed runs.  A column missing from one run of a pair leaves that pair
    out of that column's difference only (its ``n`` shows it).
    """
    arm_seeds = {run.seed for run in arm if run.seed is not None}
    base_seeds = {run.seed for run in baseline if run.seed is not None}
    common = sorted(arm_seeds & base_seeds)
    diffs, differences = {}, {}
    for column in columns:
        a, b = _by_seed(arm, value, column), _by_seed(baseline, value, column)
        differences[column] = [a[s] - b[s] for s in common if s in a and s in b]
        diffs[column] = mean_std(differences[column])
    return Pairing(
        seeds=common,
        dropped_arm=sorted(arm_seeds - base_seeds),
        dropped_baseline=sorted(base_seeds - arm_seeds),
        unseeded=sum(run.seed is None for run in arm),
        repeated=sorted(_repeated(arm) | _repeated(baseline)),
        diffs=diffs,
        differences=differences,
    )
