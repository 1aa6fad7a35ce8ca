"""Per-class results across a sweep: which classes an ablation hurts.

Each arm's mean per-class score over seeds and its per-class difference from the baseline arm, paired by seed like
every other difference of the report; the per-run side (names, summaries, the confusion figure) is
:mod:`experiments.analysis.per_class`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.analysis.per_class import PER_CLASS
from experiments.reporting.aggregate import Group, Summary
from experiments.reporting.comparison import pair_by_seed
from experiments.reporting.runs import RunResult
from experiments.reporting.stats import Stat, mean_std
from experiments.run.layout import METRICS

#: the report's per-class CSV, beside report.csv
CSV_NAME = "report_per_class.csv"
#: above this many classes the console gets a pointer to the CSV instead of the table
CONSOLE_CLASSES = 20
#: the classes named per arm under "largest drops"
WORST_SHOWN = 3


# ---------------------------------------------------------------------------------------------- the report


def read_per_class(path: str | Path) -> dict[str, dict[str, float]]:
    """A run dir's recorded per-class scores, ``{"test/acc": {name: value}}``; {} for a run without them (older
    runs, reconstruction) or an unreadable record. Non-numbers (a class absent from the test split) are dropped."""
    try:
        record = json.loads((Path(path) / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    raw = record.get(PER_CLASS) if isinstance(record, dict) else None
    if not isinstance(raw, dict):
        return {}
    scores: dict[str, dict[str, float]] = {}
    for metric, values in raw.items():
        if isinstance(values, dict):
            numbers = {str(name): float(v) for name, v in values.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            if numbers:
                scores[str(metric)] = numbers
    return scores


@dataclass
class ArmScores:
    """One arm's per-class scores: mean ± std over its completed seeds, and (but for the baseline) the per-class
    difference from the baseline paired by seed."""

    group: Group
    stats: dict[str, Stat]
    diffs: dict[str, Stat] | None = None  # None for the baseline itself, or without one

    def worst(self, count: int = WORST_SHOWN) -> list[tuple[str, Stat]]:
        """The classes this arm loses most on against the baseline, largest drop first (drops only)."""
        drops = [(name, d) for name, d in (self.diffs or {}).items() if d.mean is not None and d.mean < 0]
        return sorted(drops, key=lambda item: item[1].mean)[:count]


@dataclass
class PerClassTable:
    """One per-class score (``test/acc``, ``test/iou``) of every arm of a sweep, rows = classes."""

    metric: str
    classes: list[str]
    arms: list[ArmScores] = field(default_factory=list)
    baseline: ArmScores | None = None


def per_class_tables(summary: Summary) -> list[PerClassTable]:
    """A table per per-class metric any completed run recorded; classes in the order the runs name them, the
    baseline arm first, then the report's order (best first)."""
    scores = {id(run): read_per_class(run.path) for run in summary.completed}
    metrics: list[str] = []
    for per_run in scores.values():
        metrics += [m for m in per_run if m not in metrics]
    tables = []
    for metric in metrics:
        classes: list[str] = []
        for per_run in scores.values():
            classes += [name for name in per_run.get(metric, {}) if name not in classes]

        def value(run: RunResult, name: str, metric: str = metric) -> float | None:
            return scores.get(id(run), {}).get(metric, {}).get(name)

        table = PerClassTable(metric, classes)
        base = summary.baseline if summary.baseline is not None and summary.baseline.n else None
        ordered = ([base] if base is not None else []) + [g for g in summary.groups if g is not base and g.n]
        for group in ordered:
            stats = {name: mean_std(value(run, name) for run in group.completed) for name in classes}
            diffs = None
            if base is not None and group is not base:
                diffs = pair_by_seed(group.completed, base.completed, classes, value).diffs
            arm = ArmScores(group, stats, diffs)
            table.arms.append(arm)
            if group is base:
                table.baseline = arm
        if table.arms and classes:
            tables.append(table)
    return tables


def _number(stat: Stat | None) -> str:
    if stat is None or stat.mean is None:
        return "—"
    if stat.n > 1 and stat.std is not None:
        return f"{stat.mean:.4f} ± {stat.std:.4f}"
    return f"{stat.mean:.4f}"


def _difference(stat: Stat | None, marker: str) -> str:
    if stat is None or stat.mean is None:
        return "—"
    return f"{stat.mean:+.4f}" + (f" {marker}" if stat.excludes_zero else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: PerClassTable, marker: str = "*") -> str:
    """Rows = classes; per arm its mean (± std over seeds) and, after the baseline, its paired difference Δ."""
    header = ["class"]
    for arm in table.arms:
        header.append(f"{arm.group.label} (baseline)" if arm is table.baseline else arm.group.label)
        if arm.diffs is not None:
            header.append(f"Δ {arm.group.label}")
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name in table.classes:
        cells = [name]
        for arm in table.arms:
            cells.append(_number(arm.stats.get(name)))
            if arm.diffs is not None:
                cells.append(_difference(arm.diffs.get(name), marker))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def drop_lines(table: PerClassTable, marker: str = "*") -> list[str]:
    """One sentence per compared arm: the classes it hurts most against the baseline, each drop whose seed-paired
    interval does not exclude 0 said to be "not resolved"."""
    if table.baseline is None:
        return []
    lines = []
    for arm in table.arms:
        if arm.diffs is None:
            continue
        worst = arm.worst()
        # a drop whose paired interval includes 0 (or that has none: one pair) is named, but not as a finding
        hurt = ", ".join(f"{name} ({_difference(d, marker)}{'' if d.excludes_zero else ', not resolved'})"
                         for name, d in worst) if worst else "no class"
        lines.append(f"`{arm.group.label}` vs `{table.baseline.group.label}`: largest {table.metric} drops: {hurt}.")
    return lines


def markdown_section(tables: Sequence[PerClassTable], marker: str = "*") -> list[str]:
    """The report's per-class section as Markdown lines ([] when no run recorded per-class scores)."""
    if not tables:
        return []
    lines = [
        "## Per class",
        "",
        "Each class's test score (`test/acc`: the fraction of the class's test images predicted as it; `test/iou`: "
        "its intersection over union), mean ± sample std over an arm's completed seeds. Δ: the arm's difference "
        f"from the baseline, per seed on the seeds both completed, then averaged; `{marker}` marks a difference "
        "whose 95 % interval excludes 0. A negative Δ is a class the ablation hurts.",
    ]
    for table in tables:
        lines += ["", f"### {table.metric}", "", markdown_table(table, marker), ""]
        lines += [f"- {line}" for line in drop_lines(table, marker)]
    return lines


def console_text(tables: Sequence[PerClassTable], csv_path: Path) -> str:
    """What the report prints: each table, or for many classes a pointer to the CSV."""
    parts = []
    for table in tables:
        if len(table.classes) > CONSOLE_CLASSES:
            parts.append(f"per-class {table.metric}: {len(table.classes)} classes, see {csv_path}")
        else:
            parts.append(f"per-class {table.metric}:\n{markdown_table(table)}")
        parts += drop_lines(table)
    return "\n".join(parts)


CSV_HEADER = ("metric", "class", "group", "baseline", "n", "mean", "std", "diff", "diff_ci_low", "diff_ci_high",
              "diff_n")


def write_csv(tables: Sequence[PerClassTable], path: str | Path) -> Path:
    """Long format, one row per (metric, class, arm), full precision; empty cells where there is no value."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for table in tables:
            for name in table.classes:
                for arm in table.arms:
                    stat = arm.stats[name]
                    diff = arm.diffs.get(name) if arm.diffs is not None else None
                    writer.writerow([
                        table.metric, name, arm.group.label, "true" if arm is table.baseline else "false", stat.n,
                        _blank(stat.mean), _blank(stat.std),
                        *([_blank(diff.mean), _blank(diff.ci_low), _blank(diff.ci_high), diff.n] if diff is not None
                          else ["", "", "", ""]),
                    ])
    return path


def _blank(value: float | None) -> object:
    return "" if value is None else value
