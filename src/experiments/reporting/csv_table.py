"""The report's table as ``report.csv``: one row per group, every number at full precision (render.py writes the
human-readable markdown; this module the machine-readable copy, from the same :class:`Summary`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from experiments.reporting.aggregate import Group, Summary
from experiments.reporting.render import shown_test_stat

#: per column, after ``<col>_mean`` and ``<col>_std``; ``ci_*`` is the interval the report shows (bounded for metrics
#: in [0, 1], log-t for log-scale ones), ``test_halfwidth`` the mean per-run Wilson half-width and ``test_count`` the
#: runs' smallest test count; for a log-scale column ``diff*`` are ln(arm/baseline), ``geo_mean`` the geometric mean
#: (the log-t interval's centre) and ``ratio*`` exp of the diff and its interval (all three empty for other columns)
CSV_INTERVAL_SUFFIXES = ("ci_low", "ci_high", "ci_method", "test_halfwidth", "test_count", "diff", "diff_ci_low",
                         "diff_ci_high", "diff_n", "diff_p", "diff_p_holm", "diff_p_signflip", "geo_mean", "ratio",
                         "ratio_ci_low", "ratio_ci_high")


def csv_header(summary: Summary) -> list[str]:
    header = ["group", "n"]
    for col in summary.columns:
        header += [f"{col}_mean", f"{col}_std"] + [f"{col}_{suffix}" for suffix in CSV_INTERVAL_SUFFIXES]
    header += ["n_failed", "n_missing", "seeds", "baseline", "paired_seeds"]
    if summary.selection is not None:
        header.append(f"best_{summary.selection.key}")
    return header


def _blank(value: float | int | str | None) -> object:
    return "" if value is None else value


def _exp(value: float | None) -> object:
    return "" if value is None else math.exp(value)


def _log_scale_cells(summary: Summary, group: Group, column: str) -> list[object]:
    """``geo_mean``, ``ratio``, ``ratio_ci_low``, ``ratio_ci_high`` of one CSV cell group (empty off the log scale,
    and the ratio empty for the baseline or without pairs)."""
    if column not in summary.log_scale:
        return ["", "", "", ""]
    cells: list[object] = [_blank(group.geometric_mean(column))]
    diff = group.pairing.diffs[column] if group.pairing is not None else None
    if diff is None:
        return cells + ["", "", ""]
    test = group.pairing.tests.get(column) if group.pairing is not None else None
    shown = diff if test is None else shown_test_stat(diff, test)
    return cells + [_exp(shown.mean), _exp(shown.ci_low), _exp(shown.ci_high)]


def write_csv(summary: Summary, path: Path) -> None:
    """One row per group; full float precision, empty cells where a group has no value.

    Interval, test and difference cells are empty where there is none (one seed; the baseline's own difference;
    p-values for the per-run extras such as params).
    """
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(summary))
        for group in summary.groups:
            row: list[object] = [group.label, group.n]
            for col in summary.columns:
                stat = group.stats[col]
                interval = group.intervals.get(col)
                has_interval = interval is not None and interval.low is not None
                noise = group.noise.get(col)
                row += [_blank(stat.mean), _blank(stat.std)]
                row += [_blank(interval.low), _blank(interval.high), interval.method] if has_interval \
                    else ["", "", ""]
                row += [noise.half_width, min(noise.counts)] if noise is not None else ["", ""]
                diff = group.pairing.diffs[col] if group.pairing is not None else None
                test = group.pairing.tests.get(col) if group.pairing is not None else None
                if diff is None:
                    row += ["", "", "", ""]
                else:
                    shown = diff if test is None else shown_test_stat(diff, test)
                    row += [_blank(shown.mean), _blank(shown.ci_low), _blank(shown.ci_high), diff.n]
                row += ["", "", ""] if test is None else [_blank(test.p_value), _blank(test.p_holm),
                                                          _blank(test.p_exact)]
                row += _log_scale_cells(summary, group, col)
            row += [group.n_failed, group.n_missing, ";".join(str(s) for s in group.seeds)]
            row += [
                "true" if group is summary.baseline else "false",
                ";".join(str(s) for s in group.pairing.seeds) if group.pairing is not None else "",
            ]
            if summary.selection is not None:
                row.append(_blank(group.selected))
            writer.writerow(row)
