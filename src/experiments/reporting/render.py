"""Render a :class:`~experiments.reporting.aggregate.Summary` as the report: Markdown (report.md and the
console) and CSV (report.csv), with the statistics method and pairing notes spelled out for the reader."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.reporting.aggregate import (
    BOUNDED_METRICS,
    LOG_SCALE_METRICS,
    Group,
    Summary,
    group_key,
    is_bounded,
)
from experiments.reporting.comparison import DEFAULT_LABEL, format_label
from experiments.reporting.inference import (
    BOOTSTRAP_MIN_N,
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    DEFAULT_EPSILON,
    PER_IMAGE_RESAMPLES,
    Interval,
    PairedTest,
    sign_flip_floor,
    sign_flip_min_seeds,
)
from experiments.reporting.runs import PRUNED, RunResult
from experiments.reporting.selection import Selection
from experiments.reporting.stats import Stat

# ------------------------------------------------------------------------------------------- rendering

MARKER = "*"
LEGEND = (
    f"`{MARKER}` marks a difference whose 95 % interval excludes 0; with a single pair there is a difference "
    "but no interval."
)
#: the significance level the seed floor is stated at
ALPHA = round(1.0 - CONFIDENCE, 12)
#: the exact sign-flip p is shown from this many pairs on (below, its floor 2^(1-n) exceeds ALPHA)
SIGN_FLIP_SHOWN_FROM = sign_flip_min_seeds(ALPHA)
STATISTICS_METHOD = (
    "95 % CI over seeds: for metrics bounded to [0, 1] ("
    + ", ".join(f"`{name}`" for name in BOUNDED_METRICS)
    + f") a logit-t interval below {BOOTSTRAP_MIN_N} seeds, expit(z̄ ± t(0.975, n−1)·s_z/√n) with z = logit(value) "
    f"(a value at exactly 0 or 1 is moved half a test image inside, or {DEFAULT_EPSILON} without a test count; a "
    f"bootstrap is too narrow at a few seeds), and a BCa bootstrap of the mean from {BOOTSTRAP_MIN_N} seeds "
    f"({BOOTSTRAP_RESAMPLES} resamples, fixed seed); for every other column the Student-t interval "
    "mean ± t(0.975, n−1)·s/√n, with s the sample std of the n completed runs; a group with one run has no "
    "interval. Positive scale-type metrics ("
    + ", ".join(f"`{name}`" for name in LOG_SCALE_METRICS)
    + ") get the log-t interval exp(ȳ ± t(0.975, n−1)·s_y/√n) with y = ln(value): an interval for the geometric "
    "mean exp(ȳ), which is therefore the centre shown for them (marked `(geometric)`; `×/÷` the geometric std "
    "exp(s_y) in the results table), and their Δ vs baseline is the ratio arm/baseline, exp of the mean per-seed "
    "log ratio with its interval and tests on the log scale (a column with a value ≤ 0 in any run stays on the "
    "linear scale with the t interval). The `CI method` column names the method of each row. `test-set ±` is "
    "each run's own test-set sampling noise, apart from the seeds': the mean over the arm's runs of the "
    "half-width of the 95 % Wilson "
    "interval of the run's test accuracy from its test count N (for test mIoU: of the 95 % percentile bootstrap "
    f"of the run's mIoU over its N test images, {PER_IMAGE_RESAMPLES} resamples). Δ vs baseline: the difference "
    "arm − baseline is taken per seed on the seeds both arms completed, then mean ± t(0.975, n−1)·s_d/√n over "
    "those n pairs (for a metric in [0, 1] cut to [−1, 1], where every difference lies); p is the two-sided "
    "paired t test (primary), p (Holm) that p adjusted with Holm's step-down method over the k − 1 arms compared "
    "with the baseline (one family per metric), and p (sign-flip) the exact two-sided sign-flip permutation p "
    f"over all 2^n sign patterns, a check shown from n = {SIGN_FLIP_SHOWN_FROM} pairs."
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


def format_geometric(column: str, log_stat: Stat) -> str:
    """A log-scale column's cell of the results table: ``geometric mean ×/÷ geometric std`` (exp of the mean and
    of the sample std of the logs) with more than one value, the bare value for one, ``—`` for none."""
    if log_stat.mean is None:
        return "—"
    centre = math.exp(log_stat.mean)
    text = _formatter(column, centre)(centre)
    if log_stat.n > 1 and log_stat.std is not None:
        return f"{text} ×/÷ {math.exp(log_stat.std):.3f}"
    return text


def format_ratio(shown: Stat | ShownDifference) -> tuple[str, str]:
    """(ratio, its interval) of a log-scale column's paired difference given in logs: ``×1.523 *`` and
    ``[×1.102, ×2.104]``; the marker when the ratio's interval excludes 1 (the log interval excludes 0)."""
    if shown.mean is None:
        return "—", "—"
    fmt = _formatter("ratio", math.exp(shown.mean))
    text = f"×{fmt(math.exp(shown.mean))}" + (f" {MARKER}" if shown.excludes_zero else "")
    if shown.ci_low is None or shown.ci_high is None:
        return text, f"none (pairs={shown.n})"
    return text, f"[×{fmt(math.exp(shown.ci_low))}, ×{fmt(math.exp(shown.ci_high))}]"


def format_interval(column: str, stat: Stat | ShownDifference, what: str = "n", reference: float | None = None
                    ) -> str:
    """``[low, high]`` in the notation of ``reference`` (default: the mean); ``none (n=1)`` when a single value
    gives no interval; ``—`` for no value."""
    if stat.mean is None:
        return "—"
    if stat.ci_low is None or stat.ci_high is None:
        return f"none ({what}={stat.n})"
    fmt = _formatter(column, stat.mean if reference is None else reference)
    return f"[{fmt(stat.ci_low)}, {fmt(stat.ci_high)}]"


def format_difference(column: str, stat: Stat | ShownDifference, reference: float | None = None) -> str:
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
    header = ["group", *best, "n"]
    header += [f"{col} (geometric)" if col in summary.log_scale else col for col in summary.columns]
    if show_bad:
        header += ["failed", "missing"]
    rows = []
    for group in summary.groups:
        cells = [group.label, *_best_of_cells(summary, group), str(group.n)]
        cells += [format_geometric(col, group.log_stats[col]) if col in summary.log_scale
                  else format_stat(col, group.stats[col]) for col in summary.columns]
        if show_bad:
            cells += [str(group.n_failed), str(group.n_missing)]
        rows.append(cells)
    return _md_rows(header, rows, left=1 + len(best))


def format_p(p: float | None) -> str:
    """A p-value: 3 decimals, ``<0.001`` below, ``—`` for none."""
    if p is None:
        return "—"
    if not math.isfinite(p):
        return str(p)
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_seed_interval(column: str, stat: Stat, interval: Interval | None, centre: float | None = None) -> str:
    """The interval over seeds the report shows (bounded for metrics in [0, 1]), in the notation of the mean (of
    ``centre`` when given: a log-scale column's geometric mean)."""
    if stat.mean is None:
        return "—"
    if interval is None or interval.low is None or interval.high is None:
        return f"none (n={stat.n})"
    fmt = _formatter(column, stat.mean if centre is None else centre)
    return f"[{fmt(interval.low)}, {fmt(interval.high)}]"


def format_noise(group: Group, column: str) -> str:
    """``±0.0094 (Wilson, N=1000)``: the arm's mean per-run test-set half-width, its method and the test count."""
    noise = group.noise.get(column)
    if noise is None:
        return "—"
    count = f"N={noise.count}" if noise.count is not None else f"N={min(noise.counts)}–{max(noise.counts)}"
    return f"±{noise.half_width:.4f} ({noise.method}, {count})"


def _sign_flip_cell(test: PairedTest) -> str:
    if test.n < SIGN_FLIP_SHOWN_FROM:
        return f"n<{SIGN_FLIP_SHOWN_FROM}"
    return format_p(test.p_exact)


def _difference_cells(summary: Summary, group: Group, column: str) -> list[str]:
    if summary.baseline is not None and group is summary.baseline:
        return ["baseline", "—", "—", "—", "—", "—"]
    if group.pairing is None:
        return ["—"] * 6
    diff, reference = group.pairing.diffs[column], group.stats[column].mean
    test = group.pairing.tests.get(column)
    if column in summary.log_scale:  # the differences are log ratios: shown as the ratio arm/baseline
        ratio, ratio_interval = format_ratio(diff if test is None else shown_test_stat(diff, test))
        if test is None:
            return [ratio, ratio_interval, str(diff.n), "—", "—", "—"]
        return [ratio, ratio_interval, str(diff.n), format_p(test.p_value), format_p(test.p_holm),
                _sign_flip_cell(test)]
    if test is None:
        return [format_difference(column, diff, reference), format_interval(column, diff, "pairs", reference),
                str(diff.n), "—", "—", "—"]
    shown = shown_test_stat(diff, test)
    return [format_difference(column, shown, reference), format_interval(column, shown, "pairs", reference),
            str(diff.n), format_p(test.p_value), format_p(test.p_holm), _sign_flip_cell(test)]


@dataclass(frozen=True)
class ShownDifference:
    """A paired difference as the table shows it: the test's interval (cut to [−1, 1] for a bounded metric), read
    by :func:`format_difference` and :func:`format_interval` like a :class:`Stat`."""

    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def excludes_zero(self) -> bool:
        low, high = self.ci_low, self.ci_high
        return low is not None and high is not None and (low > 0.0 or high < 0.0)


def shown_test_stat(diff: Stat, test: PairedTest) -> Stat | ShownDifference:
    """The paired test's interval in place of the Stat's own (the same t interval, but cut to the bounds)."""
    if test.low is None or test.high is None or diff.mean is None:
        return diff
    return ShownDifference(diff.n, diff.mean, test.low, test.high)


def interval_table(summary: Summary, columns: Sequence[str] | None = None) -> str:
    """One row per (metric, group): mean, its 95 % interval over seeds and that interval's method, the runs' own
    test-set noise, the paired difference from the baseline with its interval, and its p-values (paired t, Holm,
    exact sign-flip).  ``columns`` defaults to every final metric.  A log-scale column's mean is its geometric mean
    (the centre of its log-t interval, marked ``(geometric)``) and its Δ the ratio arm/baseline (``×1.52``)."""
    columns = summary.metric_columns if columns is None else list(columns)
    best = _best_of_header(summary)
    header = ["metric", "group", *best, "n", "mean", "95 % CI", "CI method", "test-set ±", "Δ vs baseline",
              "95 % CI of Δ", "pairs", "p", "p (Holm)", "p (sign-flip)"]
    rows = []
    for column in columns:
        for group in summary.groups:
            stat = group.stats[column]
            interval = group.intervals.get(column)
            method = interval.method if interval is not None and interval.low is not None else "—"
            centre = group.geometric_mean(column) if column in summary.log_scale else None
            mean = format_stat(column, Stat(stat.n, stat.mean, None)) if centre is None else \
                f"{_formatter(column, centre)(centre)} (geometric)"
            rows.append(
                [
                    column,
                    group.label,
                    *_best_of_cells(summary, group),
                    str(stat.n),
                    mean,
                    format_seed_interval(column, stat, interval, centre),
                    method,
                    format_noise(group, column),
                    *_difference_cells(summary, group, column),
                ]
            )
    return _md_rows(header, rows, left=2 + len(best))


def interval_methods_note(summary: Summary, columns: Sequence[str] | None = None) -> str:
    """Which interval method each column's rows used, at which seed counts (one sentence)."""
    columns = summary.metric_columns if columns is None else list(columns)
    parts = []
    for column in columns:
        used: dict[str, set[int]] = {}
        for group in summary.groups:
            interval = group.intervals.get(column)
            if interval is not None and interval.low is not None:
                used.setdefault(interval.method, set()).add(group.stats[column].n)
        kind = "positive, log scale: interval of the geometric mean" if column in summary.log_scale \
            else "bounded to [0, 1]" if is_bounded(column) else "unbounded"
        described = "; ".join(f"{method} at n = {', '.join(str(n) for n in sorted(ns))}"
                              for method, ns in used.items()) or "no interval (one run per arm)"
        parts.append(f"`{column}` ({kind}): {described}")
    return "CI methods: " + "; ".join(parts) + "." if parts else ""


def seed_floor_note(summary: Summary, column: str | None = None) -> str:
    """The seed floor of the exact test, at the comparisons' seed count and Holm family (one paragraph)."""
    family = len(summary.compared)
    column = column if column is not None else summary.primary
    pairs = [test.n for test in summary.tests(column)] if column is not None else []
    one = sign_flip_min_seeds(ALPHA)
    text = (
        f"Seed floor: an exact sign-flip test cannot reach p < {ALPHA:.2f} below {one} seeds (its smallest "
        "two-sided p is 2^(1−n)"
    )
    if pairs:
        n = min(pairs)
        text += f": {sign_flip_floor(n):.3g} at n = {n}"
    text += ")"
    if family > 1:
        text += (
            f"; Holm over the k−1 = {family} comparisons with the baseline needs n ≥ "
            f"{sign_flip_min_seeds(ALPHA, family)} before an exact test can pass its first step "
            f"(p ≤ {ALPHA:.2f}/{family})"
        )
    return text + ". The paired t test, which has no such floor, is the primary test; the exact p is its check."


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
            "Columns marked `(geometric)` (" + ", ".join(f"`{c}`" for c in sorted(summary.log_scale))
            + ") are geometric mean ×/÷ geometric std, exp of the mean and of the sample std of ln(value), "
            "because they are positive and vary by factors. "
            if summary.log_scale
            else ""
        )
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
        lines += ["", "## Intervals and differences from the baseline", "", interval_table(summary), "", LEGEND,
                  "", interval_methods_note(summary)]
        if summary.compared:
            lines += ["", seed_floor_note(summary)]
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
