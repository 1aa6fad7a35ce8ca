"""Group runs into configurations, reduce seeds to mean/std, and render the table (Markdown and CSV).

Conventions (documented once here, repeated in the report header):

* **Grouping.**  A run's group key is its set of Hydra overrides minus ``seed=...``, minus every override
  that is identical in all runs whose overrides are known (the *sweep constants*, listed once in the
  header), and minus ``hydra.*`` overrides that vary (they move output paths around, they do not change
  the experiment).  Runs from different sweep directories with the same key merge into one group.
* **Statistics.**  Mean and *sample* standard deviation (ddof=1) over the completed runs of a group.  With
  a single value the std is reported as 0 (there is no spread to estimate) and the Markdown omits "±".
  Non-numeric values are ignored; NaN (e.g. a diverged loss) is kept so that it stays visible.
* **Order.**  Groups are sorted by the primary metric, descending (the first of ``test/acc``,
  ``test/miou``, ``val/acc``, ``val/miou`` present), because an ablation table is read best-first.
  Groups without a value for it (e.g. every seed failed) come last; ties keep sweep order.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.reporting.runs import COMPLETED, FAILED, RunResult, is_seed_override, parse_override

METRIC_PREFIXES = ("test/", "val/", "train/")
#: per-run numbers besides the final metrics; a column appears only when some completed run recorded it
EXTRA_COLUMNS = ("params", "flops", "receptive_field", "wall_time_s", "vanishing_ratio")
PRIMARY_CANDIDATES = ("test/acc", "test/miou", "val/acc", "val/miou")
DEFAULT_LABEL = "(default)"
#: Override keys dropped from the group key even when they vary: they only configure Hydra itself.
IGNORED_OVERRIDE_PREFIXES = ("hydra.",)
#: History keys that are the x-axis, not curves.
HISTORY_AXES = ("epoch", "step")


# ------------------------------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class Stat:
    """Mean and sample std of the values available for one column of one group."""

    n: int
    mean: float | None
    std: float | None


def mean_std(values: Iterable[float | None]) -> Stat:
    """Mean and sample std (ddof=1) of the non-None values; std is 0.0 for one value, None for none.

    Implemented by hand rather than with numpy/statistics so NaN propagates predictably and the module
    stays import-light.
    """
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Stat(0, None, None)
    mean = sum(xs) / len(xs)
    if len(xs) == 1 or all(x == xs[0] for x in xs):
        # Exactly 0 for identical values (e.g. params) instead of floating-point noise like 3e-17.
        return Stat(len(xs), mean if len(xs) == 1 else xs[0], 0.0)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return Stat(len(xs), mean, math.sqrt(var))


def run_value(run: RunResult, column: str) -> float | None:
    """Value of a table column for one run: an extra column attribute or a final metric."""
    if column in EXTRA_COLUMNS:
        return getattr(run, column)
    return run.metrics.get(column)


# -------------------------------------------------------------------------------------------- grouping


def sweep_constants(runs: Sequence[RunResult]) -> list[str]:
    """Non-seed overrides present, with the same value, in every run whose overrides are known.

    Runs with unknown overrides are skipped: their empty list would otherwise make nothing constant.
    """
    known = [run for run in runs if run.overrides_known]
    if not known:
        return []
    common = set(o for o in known[0].overrides if not is_seed_override(o))
    for run in known[1:]:
        common &= set(run.overrides)
    return sorted(common, key=_override_sort_key)


def _override_sort_key(override: str) -> tuple[str, str]:
    return parse_override(override)


def group_key(run: RunResult, constants: Iterable[str]) -> tuple[str, ...]:
    """Sorted overrides that distinguish this run's configuration from the rest of the sweep."""
    constant = set(constants)
    kept = {
        o
        for o in run.overrides
        if o not in constant
        and not is_seed_override(o)
        and not parse_override(o)[0].startswith(IGNORED_OVERRIDE_PREFIXES)
    }
    return tuple(sorted(kept, key=_override_sort_key))


def format_label(key: Sequence[str]) -> str:
    """Human label ``a=1, b=2`` (keys sorted); the empty key is the sweep's default configuration."""
    return ", ".join(key) if key else DEFAULT_LABEL


@dataclass
class Group:
    """All runs (any status) sharing one configuration; statistics use the completed ones only."""

    key: tuple[str, ...]
    runs: list[RunResult] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return format_label(self.key)

    @property
    def completed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == COMPLETED]

    @property
    def n(self) -> int:
        return len(self.completed)

    @property
    def n_failed(self) -> int:
        return sum(run.status == FAILED for run in self.runs)

    @property
    def n_missing(self) -> int:
        return sum(run.status not in (COMPLETED, FAILED) for run in self.runs)

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.completed if run.seed is not None)


def group_runs(runs: Sequence[RunResult], constants: Iterable[str] | None = None) -> list[Group]:
    """Bucket runs by :func:`group_key`, in order of first appearance (sweep order)."""
    constants = sweep_constants(runs) if constants is None else list(constants)
    groups: dict[tuple[str, ...], Group] = {}
    for run in runs:
        key = group_key(run, constants)
        groups.setdefault(key, Group(key)).runs.append(run)
    return list(groups.values())


def metric_columns(runs: Sequence[RunResult]) -> list[str]:
    """Final-metric columns present in any completed run: primary first, then test/, val/, train/."""
    present = {key for run in runs if run.completed for key in run.metrics}
    columns: list[str] = []
    primary = primary_metric(present)
    if primary:
        columns.append(primary)
    for prefix in METRIC_PREFIXES:
        columns += sorted(k for k in present if k.startswith(prefix) and k != primary)
    columns += [c for c in EXTRA_COLUMNS if any(run_value(r, c) is not None for r in runs if r.completed)]
    return columns


def primary_metric(available: Iterable[str]) -> str | None:
    """First of :data:`PRIMARY_CANDIDATES` that exists: the metric the table is sorted by."""
    present = set(available)
    return next((m for m in PRIMARY_CANDIDATES if m in present), None)


@dataclass
class Summary:
    """The aggregated sweep: what the Markdown, CSV and plots are rendered from."""

    runs: list[RunResult]
    groups: list[Group]
    constants: list[str]
    columns: list[str]
    primary: str | None

    @property
    def completed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == COMPLETED]

    @property
    def failed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == FAILED]

    @property
    def incomplete(self) -> list[RunResult]:
        return [run for run in self.runs if run.status not in (COMPLETED, FAILED)]

    @property
    def bar_metrics(self) -> list[str]:
        """Headline metrics that get a bar chart: every primary candidate present."""
        return [m for m in PRIMARY_CANDIDATES if m in self.columns]


def summarize(runs: Sequence[RunResult]) -> Summary:
    """Group, compute per-column statistics and sort best-first by the primary metric."""
    runs = list(runs)
    constants = sweep_constants(runs)
    groups = group_runs(runs, constants)
    columns = metric_columns(runs)
    for group in groups:
        done = group.completed
        group.stats = {col: mean_std(run_value(run, col) for run in done) for col in columns}
    primary = primary_metric(columns)
    if primary:

        def sort_key(item: tuple[int, Group]) -> tuple[int, float, int]:
            index, group = item
            mean = group.stats[primary].mean
            if mean is None or math.isnan(mean):
                return (1, 0.0, index)
            return (0, -mean, index)

        groups = [g for _, g in sorted(enumerate(groups), key=sort_key)]
    return Summary(runs=runs, groups=groups, constants=constants, columns=columns, primary=primary)


# -------------------------------------------------------------------------------- curves and gradients


@dataclass(frozen=True)
class Curve:
    """Mean and std of one history metric over a group's seeds, per epoch."""

    x: list[float]
    mean: list[float]
    std: list[float]


def curve_metrics(runs: Sequence[RunResult]) -> list[str]:
    """History keys worth a learning-curve plot: validation metrics and every loss."""
    keys = {key for run in runs if run.completed for key in run.history}
    chosen = {k for k in keys if k not in HISTORY_AXES and (k.startswith("val/") or "loss" in k)}
    return sorted(chosen, key=lambda k: (not k.startswith("val/"), k))


def curve_stats(runs: Sequence[RunResult], metric: str) -> Curve | None:
    """Average a history metric across runs, aligned on epoch (seeds may stop at different epochs).

    Missing (null) and non-finite points are skipped, so runs logging validation only every few epochs
    still contribute.  Falls back to the list index when a run has no usable ``epoch`` list.
    """
    by_x: dict[float, list[float]] = {}
    for run in runs:
        values = run.history.get(metric)
        if not values:
            continue
        epochs = run.history.get("epoch")
        if not epochs or len(epochs) != len(values):
            epochs = [float(i) for i in range(len(values))]
        for x, y in zip(epochs, values, strict=True):
            if x is None or y is None or not math.isfinite(y):
                continue
            by_x.setdefault(float(x), []).append(y)
    if not by_x:
        return None
    xs = sorted(by_x)
    stats = [mean_std(by_x[x]) for x in xs]
    return Curve(x=xs, mean=[s.mean or 0.0 for s in stats], std=[s.std or 0.0 for s in stats])


@dataclass(frozen=True)
class FlowStats:
    """Per-layer gradient norm at init, mean/std over a group's seeds (positive values only)."""

    layers: list[str]
    depth: list[int]
    mean: list[float]
    std: list[float]


def gradient_flow_stats(runs: Sequence[RunResult]) -> FlowStats | None:
    """Average gradient-flow profiles by layer position; non-positive norms cannot be drawn on log-y."""
    flows = [run.gradient_flow for run in runs if run.completed and run.gradient_flow is not None]
    if not flows:
        return None
    length = max(len(flow.grad_norm) for flow in flows)
    names = next((flow.layers for flow in flows if len(flow.layers) == length), [])
    depth, means, stds, layers = [], [], [], []
    for i in range(length):
        values = [
            v for flow in flows if i < len(flow.grad_norm) and (v := flow.grad_norm[i]) is not None and v > 0
        ]
        stat = mean_std(v for v in values if math.isfinite(v))
        if stat.mean is None:
            continue
        depth.append(i)
        means.append(stat.mean)
        stds.append(stat.std or 0.0)
        layers.append(names[i] if i < len(names) else str(i))
    if not depth:
        return None
    return FlowStats(layers=layers, depth=depth, mean=means, std=stds)


# ------------------------------------------------------------------------------------------- rendering


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


def format_stat(column: str, stat: Stat) -> str:
    """``mean ± std`` when there is more than one value, the bare mean for one, ``—`` for none."""
    if stat.mean is None:
        return "—"
    special = _FORMATTERS.get(column)
    # Metric std is printed in the mean's notation, so a tiny spread reads 0.0000, not 3.4e-17.
    fixed = _fixed_point_ok(stat.mean) if math.isfinite(stat.mean) else None

    def fmt(value: float) -> str:
        return special(value) if special is not None else _fmt_metric(value, fixed)

    if stat.n > 1 and stat.std is not None:
        return f"{fmt(stat.mean)} ± {fmt(stat.std)}"
    return fmt(stat.mean)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(summary: Summary) -> str:
    """The results table in GitHub Markdown, one row per group."""
    show_bad = any(g.n_failed or g.n_missing for g in summary.groups)
    header = ["group", "n", *summary.columns]
    if show_bad:
        header += ["failed", "missing"]
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for group in summary.groups:
        cells = [_md_cell(group.label), str(group.n)]
        cells += [format_stat(col, group.stats[col]) for col in summary.columns]
        if show_bad:
            cells += [str(group.n_failed), str(group.n_missing)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def render_markdown(summary: Summary, dirs: Sequence[Path], plots: Sequence[Path] = ()) -> str:
    """The full ``report.md``: header, table, plots, failed and missing runs."""
    tasks = sorted({run.task for run in summary.runs if run.task})
    lines = [
        "# Sweep report",
        "",
        "Directories: " + ", ".join(f"`{d}`" for d in dirs),
        "",
        f"Runs: {len(summary.completed)} completed, {len(summary.failed)} failed, "
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
        "## Results",
        "",
        markdown_table(summary),
    ]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Failed runs", ""]
    lines += [_run_line(r, summary.constants) for r in summary.failed] or ["None."]
    lines += ["", "## Missing", ""]
    lines += [_run_line(r, summary.constants) for r in summary.incomplete] or ["None."]
    return "\n".join(lines) + "\n"


def csv_header(summary: Summary) -> list[str]:
    header = ["group", "n"]
    for col in summary.columns:
        header += [f"{col}_mean", f"{col}_std"]
    return header + ["n_failed", "n_missing", "seeds"]


def write_csv(summary: Summary, path: Path) -> None:
    """One row per group; full float precision, empty cells where a group has no value."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(summary))
        for group in summary.groups:
            row: list[object] = [group.label, group.n]
            for col in summary.columns:
                stat = group.stats[col]
                row += ["" if stat.mean is None else stat.mean, "" if stat.std is None else stat.std]
            row += [group.n_failed, group.n_missing, ";".join(str(s) for s in group.seeds)]
            writer.writerow(row)
