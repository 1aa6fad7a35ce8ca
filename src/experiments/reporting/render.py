"""Render a :class:`~experiments.reporting.aggregate.Summary` as the report: Markdown (report.md and the
console) and CSV (report.csv), with the statistics method and pairing notes spelled out for the reader."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from experiments.reporting.aggregate import Group, Summary, group_key
from experiments.reporting.comparison import DEFAULT_LABEL, format_label
from experiments.reporting.runs import PRUNED, RunResult
from experiments.reporting.selection import Selection
from experiments.reporting.stats import Stat

# ------------------------------------------------------------------------------------------- rendering

MARKER = "*"
LEGEND = (
    f"`{MARKER}` marks a difference whose 95 % interval excludes 0; with a single pair there is a difference "
    "but no interval."
)
STATISTICS_METHOD = (
    "95 % CI: Student-t interval over seeds, mean ± t(0.975, n−1)·s/√n with s the sample std of the n "
    "completed runs; a group with one run has no interval. Δ vs baseline: the difference arm − baseline is "
    "taken per seed on the seeds both arms completed, then mean ± t(0.975, n−1)·s_d/√n over those n pairs."
)


def _fixed_point_ok(value: float) -> bool:
    return value == 0 or 1e-3 <= abs(value) < 1e5


def _fmt_metric(value: float, fixed: bool | None = None) -> str:
    """4 decimals for the usual accuracy/loss range, scientific outside it (or when ``fixed`` is False)."""
    if not math.isfinite(value):
        return str(value)
    if fixed if fixed is not None else _fixed_point_ok(value):
        return f"{value:.4f}"
    return f"{value:.3e}"


_FORMATTERS: dict[str, Callable[[float], str]] = {
    "params": lambda v: f"{v:,.0f}" if math.isfinite(v) else str(v),
    "flops": lambda v: f"{v:,.0f}" if math.isfinite(v) else str(v),
    "receptive_field": lambda v: f"{v:.0f}" if math.isfinite(v) else str(v),
    "wall_time_s": lambda v: f"{v:.1f}" if math.isfinite(v) else str(v),
    "vanishing_ratio": lambda v: f"{v:.2e}" if math.isfinite(v) else str(v),
}


def _formatter(column: str, reference: float) -> Callable[[float], str]:
    """How to print a column's numbers; metrics use the notation that suits ``reference`` (usually the mean),
    so a tiny spread reads 0.0000, not 3.4e-17."""
    special = _FORMATTERS.get(column)
    if special is not None:
        return special
    fixed = _fixed_point_ok(reference) if math.isfinite(reference) else None
    return lambda value: _fmt_metric(value, fixed)


def format_stat(column: str, stat: Stat) -> str:
    """``mean ± std`` when there is more than one value, the bare mean for one, ``—`` for none."""
    if stat.mean is None:
        return "—"
    fmt = _formatter(column, stat.mean)
    if stat.n > 1 and stat.std is not None:
        return f"{fmt(stat.mean)} ± {fmt(stat.std)}"
    return fmt(stat.mean)


def format_interval(column: str, stat: Stat, what: str = "n", reference: float | None = None) -> str:
    """``[low, high]`` in the notation of ``reference`` (default: the mean); ``none (n=1)`` when a single value
    gives no interval; ``—`` for no value."""
    if stat.mean is None:
        return "—"
    if stat.ci_low is None or stat.ci_high is None:
        return f"none ({what}={stat.n})"
    fmt = _formatter(column, stat.mean if reference is None else reference)
    return f"[{fmt(stat.ci_low)}, {fmt(stat.ci_high)}]"


def format_difference(column: str, stat: Stat, reference: float | None = None) -> str:
    """Signed mean difference, followed by :data:`MARKER` when its interval excludes 0.

    Printed in the notation of ``reference`` (the arm's mean), so floating-point noise reads 0.0000.
    """
    if stat.mean is None:
        return "—"
    fmt = _formatter(column, stat.mean if reference is None else reference)
    text = fmt(stat.mean)
    if stat.mean > 0:
        text = "+" + text
    return f"{text} {MARKER}" if stat.excludes_zero else text


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_rows(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """A GitHub Markdown table; the first ``left`` columns are text (left-aligned), the rest numbers."""
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _best_of_header(summary: Summary) -> list[str]:
    return [f"best {summary.selection.key}"] if summary.selection is not None else []


def _best_of_cells(summary: Summary, group: Group) -> list[str]:
    if summary.selection is None:
        return []
    return [group.selected if group.selected is not None else "—"]


def markdown_table(summary: Summary) -> str:
    """The results table in GitHub Markdown, one row per group: mean ± std of every column."""
    show_bad = any(g.n_failed or g.n_missing for g in summary.groups)
    best = _best_of_header(summary)
    header = ["group", *best, "n", *summary.columns]
    if show_bad:
        header += ["failed", "missing"]
    rows = []
    for group in summary.groups:
        cells = [group.label, *_best_of_cells(summary, group), str(group.n)]
        cells += [format_stat(col, group.stats[col]) for col in summary.columns]
        if show_bad:
            cells += [str(group.n_failed), str(group.n_missing)]
        rows.append(cells)
    return _md_rows(header, rows, left=1 + len(best))


def _difference_cells(summary: Summary, group: Group, column: str) -> list[str]:
    if summary.baseline is not None and group is summary.baseline:
        return ["baseline", "—", "—"]
    if group.pairing is None:
        return ["—", "—", "—"]
    diff, reference = group.pairing.diffs[column], group.stats[column].mean
    return [
        format_difference(column, diff, reference),
        format_interval(column, diff, "pairs", reference),
        str(diff.n),
    ]


def interval_table(summary: Summary, columns: Sequence[str] | None = None) -> str:
    """One row per (metric, group): mean, its 95 % interval, the paired difference from the baseline and its
    interval.  ``columns`` defaults to every final metric."""
    columns = summary.metric_columns if columns is None else list(columns)
    best = _best_of_header(summary)
    header = ["metric", "group", *best, "n", "mean", "95 % CI", "Δ vs baseline", "95 % CI of Δ", "pairs"]
    rows = []
    for column in columns:
        for group in summary.groups:
            stat = group.stats[column]
            rows.append(
                [
                    column,
                    group.label,
                    *_best_of_cells(summary, group),
                    str(stat.n),
                    format_stat(column, Stat(stat.n, stat.mean, None)),
                    format_interval(column, stat),
                    *_difference_cells(summary, group, column),
                ]
            )
    return _md_rows(header, rows, left=2 + len(best))


def _seed_list(seeds: Sequence[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def pairing_notes(summary: Summary) -> list[str]:
    """Sentences saying which seeds each comparison with the baseline dropped (and why)."""
    base = summary.baseline
    if base is None:
        return ["No arm has a completed run, so there is no baseline and no difference."]
    if not base.n:
        return [f"The baseline `{base.label}` has no completed run, so no difference was computed."]
    notes = []
    unseeded = sum(run.seed is None for run in base.completed)
    if unseeded:
        notes.append(f"{unseeded} completed run(s) of the baseline `{base.label}` have no recorded seed: never paired.")
    compared = [group for group in summary.groups if group.pairing is not None]
    for group in compared:
        pairing, name = group.pairing, f"`{group.label}`"
        assert pairing is not None
        if not group.n:
            why = "was pruned by the search" if group.runs and all(run.status == PRUNED for run in group.runs) \
                else "has no completed run"
            notes.append(f"{name} {why}, so it has no difference from the baseline.")
            continue
        if pairing.complete and not pairing.repeated:
            continue
        parts = [f"paired on {_seed_list(pairing.seeds)}" if pairing.seeds else "no seed in common, so no difference"]
        if pairing.dropped_baseline:
            parts.append(f"dropped baseline {_seed_list(pairing.dropped_baseline)} ({name} did not complete it)")
        if pairing.dropped_arm:
            parts.append(f"dropped {name} {_seed_list(pairing.dropped_arm)} (the baseline did not complete it)")
        if pairing.unseeded:
            parts.append(f"left out {pairing.unseeded} run(s) of {name} without a recorded seed")
        if pairing.repeated:
            parts.append(f"averaged the runs that share {_seed_list(pairing.repeated)} before pairing")
        notes.append(f"{name} vs baseline `{base.label}`: " + "; ".join(parts) + ".")
    if compared and not notes:
        notes.append("Every arm was paired with the baseline on all of its seeds.")
    return notes


def statistics_method(summary: Summary) -> str:
    """The header's account of the intervals and differences (and which arm is the baseline)."""
    text = STATISTICS_METHOD
    if summary.baseline is not None:
        how = "chosen with `--baseline`"
        if not summary.baseline_chosen:
            how = "the first arm in sweep order; `--baseline` picks another"
        text += f" Baseline: `{summary.baseline.label}` ({how})."
    return text


def selection_method(selection: Selection) -> str:
    """The header's account of ``--best-of``."""
    return (
        f"Each arm is reported at its own best `{selection.key}`: the value with the best mean "
        f"`{selection.metric}` over seeds ({selection.direction}) among the runs that differ only in "
        f"`{selection.key}` and the seed; every number of the arm, test metrics included, comes from the runs at "
        "that value only, and no test metric takes part in the choice. Equal means (to 12 significant digits) "
        "go to the smallest value. The selected runs' validation numbers are optimistic, since they did the "
        "choosing; compare arms on test metrics."
    )


def selection_table(summary: Summary) -> str:
    """Every candidate value of every arm with its validation score, the selected one marked."""
    selection = summary.selection
    assert selection is not None
    rows = []
    for key, choice in selection.arms:
        for candidate in choice.candidates:
            rows.append(
                [
                    format_label(key),
                    candidate.value,
                    "selected" if candidate is choice.chosen else "",
                    str(candidate.score.n),
                    format_stat(selection.metric, candidate.score),
                ]
            )
        if choice.chosen is None:
            rows.append([format_label(key), "—", f"nothing eligible (no finite {selection.metric})", "0", "—"])
    header = ["arm", selection.key, "choice", "n", f"{selection.metric} (mean ± std)"]
    return _md_rows(header, rows, left=3)


def _run_line(run: RunResult, constants: Sequence[str]) -> str:
    """Bullet naming the run dir, its configuration (constants left out) and why it has no result."""
    if run.overrides_known:
        parts = list(group_key(run, constants))
        if run.seed is not None:
            parts.append(f"seed={run.seed}")
        config = ", ".join(parts) or DEFAULT_LABEL
    else:
        config = "overrides unknown"
    return f"- `{run.path}` ({config}): {run.error or 'no details'}"


def render_markdown(summary: Summary, dirs: Sequence[Path], plots: Sequence[Path] = (),
                    sections: Sequence[str] = ()) -> str:
    """The full ``report.md``: header, tables, selection, ``sections`` (further Markdown lines, e.g. the per-class
    table of :mod:`~experiments.reporting.per_class`), plots, failed and missing runs."""
    tasks = sorted({run.task for run in summary.runs if run.task})
    lines = [
        "# Sweep report",
        "",
        "Directories: " + ", ".join(f"`{d}`" for d in dirs),
        "",
        f"Runs: {len(summary.completed)} completed, "
        + (f"{len(summary.pruned)} pruned by the search, " if summary.pruned else "")
        + f"{len(summary.failed)} failed, "
        f"{len(summary.incomplete)} missing/incomplete ({len(summary.runs)} total, "
        f"{len(summary.groups)} groups).",
    ]
    if tasks:
        lines += ["", "Task: " + ", ".join(tasks)]
    lines += [
        "",
        "Sweep constants (identical in every run, omitted from group labels): "
        + (", ".join(f"`{c}`" for c in summary.constants) if summary.constants else "none"),
        "",
        "Groups are keyed by the remaining overrides with `seed` excluded. Cells are mean ± sample std "
        "(ddof=1) over the completed runs of a group; with a single run the std is 0 and `±` is omitted. "
        + (
            f"Sorted by `{summary.primary}`, descending."
            if summary.primary
            else "No primary metric found; groups are in sweep order."
        ),
        "",
        statistics_method(summary),
    ]
    if summary.selection is not None:
        lines += ["", selection_method(summary.selection)]
    lines += ["", "## Results", "", markdown_table(summary)]
    if summary.metric_columns:
        lines += ["", "## Intervals and differences from the baseline", "", interval_table(summary), "", LEGEND]
        lines += [""] + [f"- {note}" for note in pairing_notes(summary)]
    if summary.selection is not None:
        lines += ["", f"## Selection (`--best-of {summary.selection.key}`)", "", selection_table(summary)]
    if sections:
        lines += ["", *sections]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Failed runs", ""]
    lines += [_run_line(r, summary.constants) for r in summary.failed] or ["None."]
    if summary.pruned:
        lines += ["", "## Pruned by the search", ""]
        lines += [_run_line(r, summary.constants) for r in summary.pruned]
    lines += ["", "## Missing", ""]
    lines += [_run_line(r, summary.constants) for r in summary.incomplete] or ["None."]
    return "\n".join(lines) + "\n"


#: per column, after ``<col>_mean`` and ``<col>_std``
CSV_INTERVAL_SUFFIXES = ("ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high", "diff_n")


def csv_header(summary: Summary) -> list[str]:
    header = ["group", "n"]
    for col in summary.columns:
        header += [f"{col}_mean", f"{col}_std"] + [f"{col}_{suffix}" for suffix in CSV_INTERVAL_SUFFIXES]
    header += ["n_failed", "n_missing", "seeds", "baseline", "paired_seeds"]
    if summary.selection is not None:
        header.append(f"best_{summary.selection.key}")
    return header


def _blank(value: float | int | None) -> object:
    return "" if value is None else value


def write_csv(summary: Summary, path: Path) -> None:
    """One row per group; full float precision, empty cells where a group has no value.

    Interval and difference cells are empty where there is none (one seed; the baseline's own difference).
    """
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(summary))
        for group in summary.groups:
            row: list[object] = [group.label, group.n]
            for col in summary.columns:
                stat = group.stats[col]
                row += [_blank(stat.mean), _blank(stat.std), _blank(stat.ci_low), _blank(stat.ci_high)]
                diff = group.pairing.diffs[col] if group.pairing is not None else None
                if diff is None:
                    row += ["", "", "", ""]
                else:
                    row += [_blank(diff.mean), _blank(diff.ci_low), _blank(diff.ci_high), diff.n]
            row += [group.n_failed, group.n_missing, ";".join(str(s) for s in group.seeds)]
            row += [
                "true" if group is summary.baseline else "false",
                ";".join(str(s) for s in group.pairing.seeds) if group.pairing is not None else "",
            ]
            if summary.selection is not None:
                row.append(_blank(group.selected))
            writer.writerow(row)
