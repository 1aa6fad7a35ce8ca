"""Read back what the runs wrote: grouped results with intervals, per-seed pairs, curves, TensorBoard scalars, figures.

Runs are grouped by the report's own code (:func:`experiments.reporting.summarize` over the run dirs, the same
call ``python -m experiments.report`` makes). Every number is then reduced per run, so quantities the report does
not tabulate (an eval-mode train − val gap, a shifted-test accuracy, the top layer's activation at the end) are
treated like its metrics:

* an arm's mean gets the report's across-seed interval (:func:`experiments.reporting.inference.seed_interval`):
  bounded to [0, 1] for accuracies and IoUs (logit-t below 20 seeds), Student t otherwise (:func:`shown`);
* two arms are compared by their values *paired by seed* (:func:`paired_values`), which is what a comparative
  claim (:func:`experiments.classics.claims.paired`) and the tables' Δ columns (:func:`delta`) are computed from.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.reporting import RunResult, Stat, Summary, collect_runs, mean_std, summarize
from experiments.reporting.aggregate import Group
from experiments.run.layout import RunDir

#: committed figures stay below this size (README pictures, docs/images)
MAX_FIGURE_BYTES = 200_000


# ------------------------------------------------------------------------------------------ grouped runs


def load(dirs: Iterable[Path], baseline: str | None = None, best_of: str | None = None) -> Summary | None:
    """The report's summary of every run under ``dirs``; None when there is no run at all."""
    from experiments.errors import ConfigError

    runs = collect_runs([Path(d) for d in dirs if Path(d).is_dir()])
    if not runs:
        return None
    try:
        return summarize(runs, baseline=baseline, best_of=best_of)
    except ConfigError as err:  # e.g. the baseline arm failed everywhere: report without it, and say so
        print(f"warning: {err}; summarising without --baseline/--best-of", file=sys.stderr)
        return summarize(runs)


def find(summary: Summary | None, *overrides: str) -> Group | None:
    """The arm whose overrides include all of ``overrides`` (e.g. ``"activation=relu", "init=xavier"``)."""
    if summary is None:
        return None
    wanted = set(overrides)
    matches = [g for g in summary.groups if wanted <= set(g.key)]
    return min(matches, key=lambda g: len(g.key)) if matches else None


def runs_of(group: Group | None) -> list[RunResult]:
    return [] if group is None else group.completed


def over_runs(runs: Sequence[RunResult], value: Callable[[RunResult], float | None]) -> Stat:
    """Mean, std and 95 % t-interval of one number per completed run."""
    return mean_std(value(run) for run in runs)


def metric(group: Group | None, name: str) -> Stat:
    """A final metric (or params/flops) of an arm, as the report computed it."""
    if group is None:
        return Stat(0, None, None)
    if name in group.stats:
        return group.stats[name]
    return over_runs(group.completed, lambda run: run.metrics.get(name))


def last(run: RunResult, key: str) -> float | None:
    """The last finite value of a history curve."""
    values = [v for v in run.history.get(key, []) if v is not None and math.isfinite(v)]
    return values[-1] if values else None


def at_epoch(run: RunResult, key: str, epoch: int) -> float | None:
    """A history value at ``epoch`` (0-based), or None when the run did not log it."""
    epochs, values = run.history.get("epoch", []), run.history.get(key, [])
    for e, v in zip(epochs, values, strict=False):
        if e is not None and int(e) == epoch:
            return v
    return None


def chance(summary: Summary | None) -> float | None:
    """Chance accuracy of a classification sweep: 1 / the number of classes its runs recorded (None if unknown)."""
    for run in (summary.completed if summary is not None else []):
        names = (RunDir(run.path).read_record() or {}).get("class_names")
        if names:
            return 1.0 / len(names)
    return None


def seeds(runs: Sequence[RunResult]) -> str:
    found = sorted({run.seed for run in runs if run.seed is not None})
    return ", ".join(map(str, found)) or "—"


#: metrics bounded to [0, 1] (their intervals must stay inside): accuracies, IoUs, fractions
BOUNDED_SUFFIXES = ("acc", "miou", "iou", "pixel_acc", "accuracy")


def bounded(name: str) -> bool:
    """Whether a metric (``test/acc``, ``val/miou`` ...) lies in [0, 1]."""
    return name.rsplit("/", 1)[-1].endswith(BOUNDED_SUFFIXES)


def by_seed(runs: Sequence[RunResult], value: Callable[[RunResult], float | None]) -> dict[int, float]:
    """One value per seed: ``value(run)`` of each completed run with a recorded seed (runs of one seed averaged,
    as the report pairs them); runs without a seed or a finite value are left out."""
    found: dict[int, list[float]] = {}
    for run in runs:
        number = value(run)
        if run.seed is not None and number is not None and math.isfinite(number):
            found.setdefault(int(run.seed), []).append(float(number))
    return {seed: sum(xs) / len(xs) for seed, xs in sorted(found.items())}


def paired_values(left: Sequence[RunResult], right: Sequence[RunResult], value: Callable[[RunResult], float | None],
                  right_value: Callable[[RunResult], float | None] | None = None) -> dict[int, tuple[float, float]]:
    """``seed -> (value of left's run, value of right's run)`` over the seeds both arms completed with a value."""
    a, b = by_seed(left, value), by_seed(right, right_value or value)
    return {seed: (a[seed], b[seed]) for seed in sorted(a.keys() & b.keys())}


def metric_of(name: str) -> Callable[[RunResult], float | None]:
    """The per-run reader of a final metric (or an extra column: params, flops, vanishing_ratio ...)."""
    from experiments.reporting.aggregate import run_value

    return lambda run: run_value(run, name)


def log10_of(value: Callable[[RunResult], float | None]) -> Callable[[RunResult], float | None]:
    """``log10`` of a positive per-run value (ratios spanning orders of magnitude are compared on this scale)."""
    def read(run: RunResult) -> float | None:
        number = value(run)
        return math.log10(number) if number is not None and number > 0 else None
    return read


@dataclass(frozen=True)
class Shown:
    """An arm's mean over seeds with its across-seed interval."""

    n: int
    mean: float | None
    low: float | None
    high: float | None
    method: str = ""


def shown(values: Iterable[float | None], bounded_metric: bool) -> Shown:
    """Mean and the report's across-seed interval of some per-seed values (bounded to [0, 1] when asked)."""
    from experiments.reporting.inference import seed_interval

    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return Shown(0, None, None, None)
    interval = seed_interval(xs, bounded=bounded_metric)
    return Shown(len(xs), sum(xs) / len(xs), interval.low, interval.high, interval.method)


def geometric(runs: Sequence[RunResult], value: Callable[[RunResult], float | None]) -> Shown:
    """Geometric mean of a positive per-seed value with its t interval on the log10 scale, mapped back (a ratio
    spanning orders of magnitude; its arithmetic t interval would reach below 0)."""
    logs = shown(by_seed(runs, log10_of(value)).values(), False)
    if logs.mean is None:
        return logs
    back = (lambda x: None if x is None or not math.isfinite(x) else 10.0 ** x)  # noqa: E731
    return Shown(logs.n, back(logs.mean), back(logs.low), back(logs.high), "t on log10")


def arm(runs: Sequence[RunResult], value: Callable[[RunResult], float | None], bounded_metric: bool) -> Shown:
    """:func:`shown` over an arm's runs, one value per seed."""
    return shown(by_seed(runs, value).values(), bounded_metric)


def delta(left: Sequence[RunResult], right: Sequence[RunResult], value: Callable[[RunResult], float | None]) -> Shown:
    """``left − right`` paired by seed: mean and 95 % paired t interval (the report's Δ column)."""
    from experiments.reporting.inference import paired_test

    pairs = paired_values(left, right, value)
    test = paired_test([a - b for a, b in pairs.values()])
    return Shown(test.n, test.mean, test.low, test.high, test.method)


# ---------------------------------------------------------------------------------------------- format


def fmt(stat: Stat | Shown, digits: int = 3, scale: float = 1.0, percent: bool = False) -> str:
    """``0.812 [0.790, 0.834] (n=3)``: the mean, its 95 % interval over seeds, the seed count."""
    if stat.mean is None:
        return "—"
    unit = " %" if percent else ""

    def number(x: float) -> str:
        x *= 100.0 if percent else scale
        if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e6):
            return f"{x:.2e}"
        return f"{x:.{digits}f}"

    text = number(stat.mean) + unit
    low, high = (stat.low, stat.high) if isinstance(stat, Shown) else (stat.ci_low, stat.ci_high)
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{number(low)}, {number(high)}]"
    return f"{text} (n={stat.n})"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub Markdown table, first column left-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ TensorBoard scalars


def _tensorboard_names(tag: str) -> set[str]:
    """The names a logged scalar may carry in TensorBoard: as logged, and as the project's logger files it."""
    try:
        from experiments.run.tensorboard import tensorboard_tag
    except ImportError:  # a checkout from before TensorBoard sections
        return {tag}
    return {tag, tensorboard_tag(tag)}


def scalars(run_dir: Path, wanted: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """The series TensorBoard holds for each scalar in ``wanted`` (names as the code logs them): tag -> [(step, value)].

    Read with TensorBoard's own event multiplexer, which walks the run dir for event files wherever the
    logger put them.
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    names = {alias: tag for tag in wanted for alias in _tensorboard_names(tag)}
    mux = EventMultiplexer(size_guidance={SCALARS: 0})
    mux.AddRunsFromDirectory(str(run_dir))
    mux.Reload()
    series: dict[str, list[tuple[int, float]]] = {}
    for run, tags in mux.Runs().items():
        for name in tags.get("scalars", []):
            if name in names:
                series.setdefault(names[name], []).extend((e.step, e.value) for e in mux.Scalars(run, name))
    return {tag: sorted(points) for tag, points in series.items()}


# --------------------------------------------------------------------------------------------- figures


def run_figures(run_dir: Path, tag: str) -> list[Path]:
    """The PNGs a run logged under ``tag`` (``figures/<tag>/step_*.png``), in step order."""
    folder = RunDir(run_dir).figure(tag, 0).parent
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def publish(source: Path | None, dest: Path, min_width: int = 0) -> Path | None:
    """Copy a figure to ``dest``, re-encoded with a 256-colour palette when it would exceed 200 kB.

    A figure narrower than ``min_width`` (a grid of 32-pixel samples) is enlarged by a whole factor with
    nearest-neighbour sampling, so every pixel stays a crisp square instead of a thumbnail.
    """
    if source is None or not Path(source).is_file():
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    if min_width:
        from PIL import Image

        with Image.open(source) as image:
            if image.width < min_width:
                factor = -(-min_width // image.width)
                image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST).save(dest)
    if dest.stat().st_size > MAX_FIGURE_BYTES:
        from PIL import Image

        with Image.open(dest) as image:
            small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            scale = 1.0
            while True:
                shown = small if scale == 1.0 else small.resize(
                    (int(small.width * scale), int(small.height * scale)), Image.Resampling.NEAREST)
                shown.save(dest, optimize=True)
                if dest.stat().st_size <= MAX_FIGURE_BYTES or scale < 0.3:
                    break
                scale *= 0.8
    return dest
