"""Group runs into configurations and reduce seeds to statistics (rendering: :mod:`~experiments.reporting.render`).

Conventions (documented once here, repeated in the report header):

* **Grouping.**  A run's group key is its set of Hydra overrides minus ``seed=...``, minus every override
  that is identical in all runs whose overrides are known (the *sweep constants*, listed once in the
  header), and minus ``hydra.*`` overrides that vary (they move output paths around, they do not change
  the experiment).  Runs from different sweep directories with the same key merge into one group.
* **Statistics.**  Mean and *sample* standard deviation (ddof=1) over the completed runs of a group.  With
  a single value the std is reported as 0 (there is no spread to estimate) and the Markdown omits "±".
  Non-numeric values are ignored; NaN (e.g. a diverged loss) is kept so that it stays visible.
* **Intervals.**  Each mean gets a 95 % interval over seeds (:func:`~experiments.reporting.inference.seed_interval`):
  metrics bounded to [0, 1] (:data:`BOUNDED_METRICS`: accuracy, mIoU, IoU, probe accuracy) a logit-t interval below
  20 seeds and a BCa bootstrap from 20, which stay inside [0, 1]; positive scale-type metrics
  (:data:`LOG_SCALE_METRICS`: the loss Hessian's top eigenvalue and trace, which span orders of magnitude across
  arms) the log-t interval exp(ȳ ± t_{0.975,n−1}·s_y/√n) of y = ln(value), an interval for the *geometric* mean,
  which the report then shows as their centre (a column with a value ≤ 0 in any completed run falls back to the
  plain t interval and arithmetic mean, see :func:`log_scale_columns`); every other column the Student t
  interval, mean ± t_{0.975,n−1}·s/√n; one run has none.  Beside it, each run's own test-set noise
  (:class:`RunNoise`: the mean over the arm's runs of the half-width of the Wilson interval of test accuracy from
  the run's test count, or of the per-image bootstrap of test mIoU), so seed-to-seed spread and test-set sampling
  noise are read apart.
* **Comparisons.**  Each arm is compared with a *baseline* arm (``--baseline``, else the first arm in sweep order
  with a completed run) by the paired-by-seed difference with its t interval
  (:mod:`~experiments.reporting.comparison`), its paired t p-value and that p Holm-adjusted over the k − 1 arms
  compared with the baseline (one family per metric), and the exact sign-flip p as a check
  (:func:`~experiments.reporting.inference.paired_test`).  Every metric column is compared, not only the primary
  one.  For a log-scale column the per-seed difference is ln(arm) − ln(baseline), a log ratio: its t interval and
  tests are on that scale and the report shows exp of it, the ratio arm/baseline (the geometric mean of the
  per-seed ratios).
* **Selection.**  With ``--best-of KEY`` each arm is reported at its best value of KEY by validation
  metric (:mod:`~experiments.reporting.selection`).
* **Order.**  Groups are sorted by the primary metric, descending (the first of ``test/acc``, ``test/miou``,
  ``test/probe_acc``, ``test/psnr``, ``val/acc``, ``val/miou``, ``val/psnr`` present), because an ablation
  table is read best-first.  Groups without a value for it (e.g. every seed failed) come last; ties keep sweep
  order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from experiments.errors import ConfigError
from experiments.reporting.comparison import (
    BASELINE_OPTION,
    Pairing,
    find_arm,
    format_label,
    pair_by_seed,
)
from experiments.reporting.inference import (
    PER_IMAGE_BOOTSTRAP,
    WILSON,
    Interval,
    PairedTest,
    paired_test,
    per_image_miou_interval,
    seed_interval,
    wilson_interval,
    with_holm,
)
from experiments.reporting.runs import COMPLETED, FAILED, PRUNED, RunResult, is_seed_override, parse_override
from experiments.reporting.selection import BEST_OF_OPTION, Selection, check_key, choose, selection_metric
from experiments.reporting.stats import Stat, mean_std
from experiments.run.layout import RunDir, read_json
from experiments.search.storage import CALLBACK_KEY
from experiments.specs import TASKS

METRIC_PREFIXES = ("test/", "val/", "train/")
#: per-run numbers besides the final metrics; a column appears only when some completed run recorded it
EXTRA_COLUMNS = ("params", "flops", "receptive_field", "wall_time_s", "vanishing_ratio")
#: headline metrics: the first present sorts the table, each present gets a bar chart (probe_acc: the linear probe of
#: an encoder, psnr: an autoencoder's reconstruction)
PRIMARY_CANDIDATES = (TASKS["classification"].test_metric, TASKS["segmentation"].test_metric, "test/probe_acc",
                      TASKS["reconstruction"].test_metric, *(spec.monitor for spec in TASKS.values()))
#: Override keys dropped from the group key even when they vary: they only configure Hydra itself.
IGNORED_OVERRIDE_PREFIXES = ("hydra.", f"{CALLBACK_KEY}.")  # the search's per-trial callback: how it ran
#: metric names (after the split prefix ``test/`` and any ``best_``) whose values lie in [0, 1], which get an
#: interval that stays there; ``iou_*`` stands for every class's IoU (``test/iou_circle``)
BOUNDED_METRICS: dict[str, str] = {
    "acc": "accuracy: a proportion of images",
    "pixel_acc": "pixel accuracy: a proportion of pixels",
    "miou": "mean IoU over classes",
    "iou_*": "one class's IoU",
    "probe_acc": "a linear probe's accuracy",
    "ece*": "expected calibration error (lower is better; ece_scaled: after temperature scaling)",
}
#: metric names (after the split prefix and any ``best_``) of positive, scale-type quantities whose seeds and arms
#: differ by factors: their interval is the log-t interval of the geometric mean, shown as their centre, and their
#: paired comparison is on log ratios (:func:`log_scale_columns` decides per sweep, from the values' signs)
LOG_SCALE_METRICS: dict[str, str] = {
    "top_eig": "the loss Hessian's top eigenvalue (sharpness; positive at a minimum, spans orders of magnitude)",
    "hessian_trace": "the loss Hessian's trace (Hutchinson estimate; the sum of its eigenvalues)",
}
#: where the difference of two metrics in [0, 1] lies: its paired interval is cut to it
DIFFERENCE_BOUNDS = (-1.0, 1.0)
#: metrics whose chance level is 1/num_classes (a guess among balanced classes)
CHANCE_METRICS = ("acc", "probe_acc")


# ------------------------------------------------------------------------------------------ statistics

# Stat and mean_std live in experiments.reporting.stats (with the Student t quantile); re-exported here.


def metric_name(column: str) -> str:
    """``test/best_acc`` -> ``acc``: the metric without its split and ``best_`` prefix."""
    name = column.split("/", 1)[1] if "/" in column else column
    return name.removeprefix("best_")


def _named_in(column: str, names: Iterable[str]) -> bool:
    """Whether the column's metric name is one of ``names`` (``key*`` matches every name starting with ``key``)."""
    if column in EXTRA_COLUMNS:
        return False
    name = metric_name(column)
    return any(name == key or (key.endswith("*") and name.startswith(key[:-1])) for key in names)


def is_bounded(column: str) -> bool:
    """Whether the column is a metric in [0, 1] (:data:`BOUNDED_METRICS`); decided by name, never by the values."""
    return _named_in(column, BOUNDED_METRICS)


def is_log_scale(column: str) -> bool:
    """Whether the column is named in :data:`LOG_SCALE_METRICS` (a positive scale-type metric), by name only;
    :func:`log_scale_columns` also checks that its values are positive."""
    return _named_in(column, LOG_SCALE_METRICS)


def log_scale_columns(runs: Sequence[RunResult], columns: Iterable[str]) -> frozenset[str]:
    """The columns of :data:`LOG_SCALE_METRICS` whose every completed run's value is positive (NaN allowed: it
    stays visible as NaN).  One value ≤ 0 (a Hutchinson trace can come out negative at a saddle) has no logarithm,
    so the whole column, in every arm, keeps the arithmetic mean and t interval: centres, intervals and paired
    differences then stay on one scale across arms."""
    done = [run for run in runs if run.status == COMPLETED]
    return frozenset(
        column for column in columns if is_log_scale(column)
        and all(not value <= 0.0 for run in done if (value := run_value(run, column)) is not None))


def log_value(run: RunResult, column: str) -> float | None:
    """ln of a run's value of a column (None when absent): what a log-scale column's paired differences are
    taken of, so that ``arm − baseline`` is ln(arm/baseline).  Only called on :func:`log_scale_columns`."""
    value = run_value(run, column)
    return None if value is None else math.log(value)


@dataclass(frozen=True)
class RunNoise:
    """One arm's own test-set noise: the mean over its runs of a per-run interval's half-width (Wilson for a test
    accuracy, from the run's test count; a bootstrap over test images for mIoU).  ``counts`` are the test counts
    of the runs it averages."""

    half_width: float
    method: str
    counts: tuple[int, ...]

    @property
    def runs(self) -> int:
        return len(self.counts)

    @property
    def count(self) -> int | None:
        """The test count when every run had the same one, else None."""
        return self.counts[0] if self.counts and all(c == self.counts[0] for c in self.counts) else None


#: test metrics whose per-run noise the report computes, and how: test accuracy is a proportion of ``test_count``
#: images (Wilson); test mIoU is bootstrapped over the images of the run's ``test_per_image.json``
RUN_NOISE_METRICS = {"test/acc": WILSON, "test/miou": PER_IMAGE_BOOTSTRAP}


def _per_image_noise(run: RunResult) -> tuple[float, int] | None:
    """(half-width of the per-image bootstrap interval of the run's test mIoU, test images), from the run's
    ``test_per_image.json``; None when the file is absent or not what the segmentation task writes."""
    try:
        record = read_json(RunDir(run.path).per_image)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    inter, union = record.get("intersection"), record.get("union")
    if not isinstance(inter, list) or not isinstance(union, list) or len(inter) != len(union) or len(inter) < 2:
        return None
    try:
        interval = per_image_miou_interval(inter, union)
    except (TypeError, ValueError):
        return None
    return None if interval.half_width is None else (interval.half_width, len(inter))


def run_noise(runs: Sequence[RunResult], column: str) -> RunNoise | None:
    """Mean per-run test-set half-width of ``column`` over the runs that recorded what it needs (a test count for
    Wilson, per-image counts for mIoU); None where there is none."""
    method = RUN_NOISE_METRICS.get(column)
    if method is None:
        return None
    halves, counts = [], []
    for run in runs:
        value = run.metrics.get(column)
        if value is None or not math.isfinite(value):
            continue
        if method == WILSON:
            if run.test_count is None or not 0.0 <= value <= 1.0:
                continue
            half = wilson_interval(value * run.test_count, run.test_count).half_width
            found = None if half is None else (half, run.test_count)
        else:
            found = _per_image_noise(run)
        if found is not None:
            halves.append(found[0])
            counts.append(found[1])
    if not halves:
        return None
    return RunNoise(sum(halves) / len(halves), method, tuple(counts))


def arm_interval(runs: Sequence[RunResult], column: str, log_scale: bool = False) -> Interval:
    """The seed interval of one arm's column (:func:`~experiments.reporting.inference.seed_interval`); a value at
    exactly 0 or 1 moves half a test image inside when the runs' test count is known.  ``log_scale``: the log-t
    interval of the geometric mean (for the columns of :func:`log_scale_columns`)."""
    values = [v for run in runs if (v := run_value(run, column)) is not None]
    counts = [run.test_count for run in runs if run.test_count]
    epsilon = 0.5 / min(counts) if counts and RUN_NOISE_METRICS.get(column) == WILSON else None
    return seed_interval(values, bounded=is_bounded(column) and not log_scale, epsilon=epsilon,
                         log_scale=log_scale)


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


def group_key(run: RunResult, constants: Iterable[str], ignore: Iterable[str] = ()) -> tuple[str, ...]:
    """Sorted overrides that distinguish this run's configuration from the rest of the sweep.

    ``ignore`` names override keys left out as well (``--best-of`` groups runs without its key).
    """
    constant, ignored = set(constants), set(ignore)
    kept = {
        o
        for o in run.overrides
        if o not in constant
        and not is_seed_override(o)
        and not parse_override(o)[0].startswith(IGNORED_OVERRIDE_PREFIXES)
        and parse_override(o)[0] not in ignored
    }
    return tuple(sorted(kept, key=_override_sort_key))


@dataclass
class Group:
    """All runs (any status) sharing one configuration; statistics use the completed ones only."""

    key: tuple[str, ...]
    runs: list[RunResult] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)
    #: the ``--best-of`` value this arm is reported at (None without --best-of, or when nothing was eligible)
    selected: str | None = None
    #: this arm against the baseline, paired by seed (None for the baseline itself, or without one)
    pairing: Pairing | None = None
    #: per column: the interval over seeds the report shows (bounded for metrics in [0, 1])
    intervals: dict[str, Interval] = field(default_factory=dict)
    #: per test metric with a known test count: the runs' own test-set noise
    noise: dict[str, RunNoise] = field(default_factory=dict)
    #: per log-scale column: mean and sample std of ln(value) over the completed runs (exp of the mean: the
    #: geometric mean the report shows as the centre; exp of the std: the geometric std factor)
    log_stats: dict[str, Stat] = field(default_factory=dict)

    def geometric_mean(self, column: str) -> float | None:
        """exp of the mean log of a log-scale column (None for another column or no value)."""
        stat = self.log_stats.get(column)
        return None if stat is None or stat.mean is None else math.exp(stat.mean)

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
        return sum(run.status not in (COMPLETED, FAILED, PRUNED) for run in self.runs)

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.completed if run.seed is not None)


def group_runs(
    runs: Sequence[RunResult], constants: Iterable[str] | None = None, ignore: Iterable[str] = ()
) -> list[Group]:
    """Bucket runs by :func:`group_key`, in order of first appearance (sweep order)."""
    constants = sweep_constants(runs) if constants is None else list(constants)
    ignore = list(ignore)
    groups: dict[tuple[str, ...], Group] = {}
    for run in runs:
        key = group_key(run, constants, ignore)
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
    #: the arm every other arm is compared with (None: no arm has a completed run)
    baseline: Group | None = None
    #: True when the baseline was named with --baseline, False when it is the first arm by default
    baseline_chosen: bool = False
    #: what --best-of decided (None without it)
    selection: Selection | None = None
    #: the columns shown on a log scale: geometric mean, log-t interval, paired ratios (:func:`log_scale_columns`)
    log_scale: frozenset[str] = frozenset()

    @property
    def completed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == COMPLETED]

    @property
    def failed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == FAILED]

    @property
    def pruned(self) -> list[RunResult]:
        """Runs a hyper-parameter search stopped early: neither results nor failures, listed apart."""
        return [run for run in self.runs if run.status == PRUNED]

    @property
    def incomplete(self) -> list[RunResult]:
        return [run for run in self.runs if run.status not in (COMPLETED, FAILED, PRUNED)]

    @property
    def bar_metrics(self) -> list[str]:
        """Headline metrics that get a bar chart: every primary candidate present."""
        return [m for m in PRIMARY_CANDIDATES if m in self.columns]

    @property
    def metric_columns(self) -> list[str]:
        """The final-metric columns (the per-run extras such as params left out)."""
        return [c for c in self.columns if c not in EXTRA_COLUMNS]

    @property
    def compared(self) -> list[Group]:
        """The arms compared with the baseline (k − 1 of k): each metric's Holm family."""
        return [group for group in self.groups if group.pairing is not None]

    def tests(self, column: str) -> list[PairedTest]:
        """The paired tests of one metric against the baseline, in table order (Holm-adjusted over this list)."""
        return [test for group in self.compared if (test := group.pairing.tests.get(column)) is not None]

    def chance(self, column: str) -> float | None:
        """Chance level of an accuracy column: 1/num_classes when every completed run records the same class count
        (balanced classes assumed); None for other metrics or an unknown count."""
        if metric_name(column) not in CHANCE_METRICS:
            return None
        counts = {run.num_classes for run in self.completed}
        if len(counts) != 1:
            return None
        classes = counts.pop()
        return 1.0 / classes if classes else None


def select_best(runs: Sequence[RunResult], constants: Sequence[str], key: str) -> tuple[list[Group], Selection]:
    """One group per arm (runs equal but for ``key`` and the seed) holding only the runs at its selected value."""
    check_key(runs, key)
    found = selection_metric(runs)
    if found is None:
        raise ConfigError(
            BEST_OF_OPTION,
            key,
            "no completed run recorded a validation metric (val/acc, val/miou or val/loss) to select by",
            "keep validation enabled in the runs to compare",
        )
    metric, maximize = found
    arms = group_runs(runs, constants, ignore=[key])
    decisions = []
    for arm in arms:
        choice = choose(arm.runs, key, metric, maximize)
        decisions.append((arm.key, choice))
        if choice.chosen is not None:
            arm.runs, arm.selected = list(choice.chosen.runs), choice.chosen.value
        else:  # nothing to select: keep only the failures so the row still says why it is empty
            arm.runs = [run for run in arm.runs if run.status != COMPLETED]
    return arms, Selection(key=key, metric=metric, maximize=maximize, arms=decisions)


def resolve_baseline(groups: Sequence[Group], constants: Sequence[str], spec: str | None) -> Group | None:
    """The arm named by ``spec`` (``--baseline``), else the first group in sweep order with a completed run."""
    if spec is None:
        return next((group for group in groups if group.n), None)
    return groups[find_arm(spec, [group.key for group in groups], constants, BASELINE_OPTION)]


def compare_with_baseline(groups: Sequence[Group], columns: Sequence[str], log_scale: Iterable[str] = ()) -> None:
    """Fill every compared arm's paired tests, column by column; Holm's family is one column's k − 1 arms.

    A column in ``log_scale`` has log-ratio differences (its pairing was made with :func:`log_value`): they are
    not cut to [−1, 1] even when the name would be bounded."""
    compared = [group for group in groups if group.pairing is not None]
    logged = set(log_scale)
    for column in columns:
        bounds = DIFFERENCE_BOUNDS if is_bounded(column) and column not in logged else None
        tests = with_holm([paired_test(group.pairing.differences.get(column, []), bounds=bounds)
                           for group in compared])
        for group, test in zip(compared, tests, strict=True):
            group.pairing.tests[column] = test


def summarize(runs: Sequence[RunResult], baseline: str | None = None, best_of: str | None = None) -> Summary:
    """Group, compute statistics and paired differences from the baseline, sort best-first by the primary metric.

    ``baseline`` names the baseline arm as on the command line (``activation=relu,model.depth=20``);
    ``best_of`` is an override key (``optimizer.lr``) to select per arm by validation metric.  Both raise a
    one-sentence :class:`~experiments.errors.ConfigError` for a name that does not fit the sweep.
    """
    runs = list(runs)
    constants = sweep_constants(runs)
    selection = None
    if best_of is not None:
        groups, selection = select_best(runs, constants, best_of)
    else:
        groups = group_runs(runs, constants)
    columns = metric_columns(runs)
    logged = log_scale_columns(runs, columns)
    for group in groups:
        done = group.completed
        group.stats = {col: mean_std(run_value(run, col) for run in done) for col in columns}
        group.intervals = {col: arm_interval(done, col, col in logged) for col in columns}
        group.noise = {col: noise for col in columns if (noise := run_noise(done, col)) is not None}
        group.log_stats = {col: mean_std(log_value(run, col) for run in done) for col in columns if col in logged}
    base = resolve_baseline(groups, constants, baseline)
    if base is not None and base.n:

        def paired_value(run: RunResult, column: str) -> float | None:
            return log_value(run, column) if column in logged else run_value(run, column)

        for group in groups:
            if group is not base:
                group.pairing = pair_by_seed(group.completed, base.completed, columns, paired_value)
        compare_with_baseline(groups, [c for c in columns if c not in EXTRA_COLUMNS], logged)
    primary = primary_metric(columns)
    if primary:

        def sort_key(item: tuple[int, Group]) -> tuple[int, float, int]:
            index, group = item
            mean = group.stats[primary].mean
            if mean is None or math.isnan(mean):
                return (1, 0.0, index)
            return (0, -mean, index)

        groups = [g for _, g in sorted(enumerate(groups), key=sort_key)]
    return Summary(
        runs=runs,
        groups=groups,
        constants=constants,
        columns=columns,
        primary=primary,
        baseline=base,
        baseline_chosen=baseline is not None,
        selection=selection,
        log_scale=logged,
    )
