"""Intervals for the report's non-primary columns: the Hessian's curvature on a log scale (log-t interval of the
geometric mean, paired ratios), the pooling study's shift sensitivity (t) and calibration (logit-t).

Every expected number is computed here by hand from the formulas, with ``scipy.stats.t`` for the quantile and the
paired t test, from fake run directories with hand-written ``metrics.json`` files (no training).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from scipy import stats

from experiments.report import main
from experiments.reporting.aggregate import LOG_SCALE_METRICS, is_log_scale, summarize
from experiments.reporting.inference import (
    LOG_T,
    T,
    geometric_mean,
    log_t_interval,
    seed_interval,
    seed_interval_method,
)
from experiments.reporting.runs import collect_runs

from .conftest import write_sweep

TOP = "train/top_eig"
TRACE = "train/hessian_trace"
SHIFT = "test/shift_diff_stage1"
#: per arm and seed: top eigenvalues a factor ~10 apart between the arms, a shift sensitivity, an ECE
BASE = {1: (12.0, 150.0, 0.20, 0.05), 2: (20.0, 240.0, 0.30, 0.07), 3: (15.0, 180.0, 0.25, 0.06)}
SHARP = {1: (130.0, 2100.0, 0.50, 0.10), 2: (210.0, 2600.0, 0.70, 0.15), 3: (160.0, 1900.0, 0.65, 0.12)}


def _metrics(acc: float, top: float, trace: float, shift: float, ece: float) -> dict[str, float]:
    return {"test/acc": acc, TOP: top, TRACE: trace, SHIFT: shift, "test/ece": ece, "train/eig_ratio": 0.1 * ece}


def _sweep(root: Path) -> Path:
    arms = {
        ("model.norm=batch",): {s: _metrics(0.80 + 0.01 * s, *v) for s, v in BASE.items()},
        ("model.norm=none",): {s: _metrics(0.75 + 0.01 * s, *v) for s, v in SHARP.items()},
    }
    return write_sweep(root, arms)


def _hand_t(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95 % Student t interval, with scipy's quantile."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _hand_log_t(values: list[float]) -> tuple[float, float, float]:
    """(geometric mean, low, high): exp of the t interval of the logs."""
    centre, low, high = _hand_t([math.log(v) for v in values])
    return math.exp(centre), math.exp(low), math.exp(high)


def test_log_t_interval_is_exp_of_the_t_interval_of_the_logs() -> None:
    values = [12.0, 20.0, 15.0]
    centre, low, high = _hand_log_t(values)  # ln: 2.4849, 2.9957, 2.7081 -> exp(2.7296 ± 4.303·0.2558/√3)
    interval = log_t_interval(values)
    assert interval.method == LOG_T == "log-t"
    assert interval.low == pytest.approx(low, rel=1e-9) and interval.high == pytest.approx(high, rel=1e-9)
    assert geometric_mean(values) == pytest.approx(centre, rel=1e-12) == pytest.approx((12 * 20 * 15) ** (1 / 3))
    # the centre is the geometric mean, not the arithmetic one: the interval is symmetric around it by a factor
    assert interval.high / centre == pytest.approx(centre / interval.low, rel=1e-9)
    assert geometric_mean(values) < sum(values) / 3
    assert seed_interval(values, bounded=False, log_scale=True) == interval
    assert seed_interval_method(3, bounded=False, log_scale=True) == LOG_T


def test_log_t_interval_edge_cases() -> None:
    assert log_t_interval([5.0]).low is None  # one seed: no interval
    point = log_t_interval([3.0, 3.0, 3.0])
    assert (point.low, point.high) == (3.0, 3.0)
    assert math.isnan(log_t_interval([3.0, math.nan]).low)  # a diverged run stays visible
    with pytest.raises(ValueError, match="positive"):
        log_t_interval([1.0, -2.0])
    # a value at or below 0 (a negative Hutchinson trace) has no log: seed_interval falls back to the t interval
    fallback = seed_interval([-1.0, 2.0, 4.0], bounded=False, log_scale=True)
    _, low, high = _hand_t([-1.0, 2.0, 4.0])
    assert fallback.method == T and fallback.low == pytest.approx(low) and fallback.high == pytest.approx(high)
    assert geometric_mean([-1.0, 2.0]) is None


def test_summary_puts_curvature_on_a_log_scale_and_shift_diff_on_t(tmp_path: Path) -> None:
    assert set(LOG_SCALE_METRICS) == {"top_eig", "hessian_trace"}
    assert is_log_scale(TOP) and is_log_scale("val/hessian_trace") and not is_log_scale(SHIFT)
    summary = summarize(collect_runs([_sweep(tmp_path)]))
    assert summary.log_scale == {TOP, TRACE}  # eig_ratio is not: |λmin/λmax| can be 0 and need not stay below 1
    groups = {group.label: group for group in summary.groups}
    base, sharp = groups["model.norm=batch"], groups["model.norm=none"]
    for group, table in ((base, BASE), (sharp, SHARP)):
        for column, index in ((TOP, 0), (TRACE, 1)):
            values = [row[index] for row in table.values()]
            centre, low, high = _hand_log_t(values)
            interval = group.intervals[column]
            assert interval.method == "log-t"
            assert (interval.low, interval.high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
            assert group.geometric_mean(column) == pytest.approx(centre, rel=1e-9)
        shifts = [row[2] for row in table.values()]
        _, low, high = _hand_t(shifts)
        shift = group.intervals[SHIFT]
        assert shift.method == "t" and shift.low == pytest.approx(low) and shift.high == pytest.approx(high)
        assert group.intervals["test/ece"].method == "logit-t"  # bounded to [0, 1] by name (ece*)
        assert group.intervals["train/eig_ratio"].method == "t"
    # paired by seed on log ratios: ln(sharp) − ln(base), t interval and paired t test on them
    logs = [math.log(SHARP[s][0]) - math.log(BASE[s][0]) for s in (1, 2, 3)]
    mean, low, high = _hand_t(logs)
    test = sharp.pairing.tests[TOP]
    assert test.mean == pytest.approx(mean) and test.low == pytest.approx(low) and test.high == pytest.approx(high)
    p = stats.ttest_rel([math.log(SHARP[s][0]) for s in (1, 2, 3)], [math.log(BASE[s][0]) for s in (1, 2, 3)])
    assert test.p_value == pytest.approx(float(p.pvalue), rel=1e-6)
    assert math.exp(mean) == pytest.approx(10.5, rel=0.05)  # the arms differ by about a factor 10
    # shift_diff stays a plain difference of values
    shift_diffs = [SHARP[s][2] - BASE[s][2] for s in (1, 2, 3)]
    assert sharp.pairing.tests[SHIFT].mean == pytest.approx(sum(shift_diffs) / 3)


def test_a_negative_trace_keeps_the_column_linear(tmp_path: Path) -> None:
    negative = {1: {"test/acc": 0.8, TRACE: -5.0}, 2: {"test/acc": 0.82, TRACE: 40.0},
                3: {"test/acc": 0.81, TRACE: 9.0}}
    positive = {s: {"test/acc": 0.8, TRACE: 100.0 * s} for s in (1, 2, 3)}
    summary = summarize(collect_runs([write_sweep(tmp_path, {("a=1",): negative, ("a=2",): positive})]))
    assert summary.log_scale == frozenset()  # one value ≤ 0: every arm on the linear scale, comparable
    assert {group.intervals[TRACE].method for group in summary.groups} == {"t"}


def test_written_report_shows_each_columns_interval_and_method(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--no-plots"]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): [c.strip() for c in line.split("|")]
            for line in md.splitlines() if line.startswith("| ") and "|" in line[2:]}

    centre, low, high = _hand_log_t([v[0] for v in SHARP.values()])
    row = rows[(TOP, "model.norm=none")]
    assert f"{centre:.4f} (geometric)" in row and f"[{low:.4f}, {high:.4f}]" in row and "log-t" in row
    logs = [math.log(SHARP[s][0]) - math.log(BASE[s][0]) for s in (1, 2, 3)]
    mean, d_low, d_high = _hand_t(logs)
    assert f"×{math.exp(mean):.4f} *" in row and f"[×{math.exp(d_low):.4f}, ×{math.exp(d_high):.4f}]" in row
    assert "log-t" in rows[(TRACE, "model.norm=batch")] and "baseline" in rows[(TRACE, "model.norm=batch")]

    shift_mean, s_low, s_high = _hand_t([v[2] for v in SHARP.values()])
    row = rows[(SHIFT, "model.norm=none")]
    assert f"{shift_mean:.4f}" in row and f"[{s_low:.4f}, {s_high:.4f}]" in row and "t" in row
    assert "logit-t" in rows[("test/ece", "model.norm=none")]
    assert "`train/top_eig` (positive, log scale: interval of the geometric mean): log-t at n = 3" in md
    assert f"`{SHIFT}` (unbounded): t at n = 3" in md
    # the results table shows the same centre with its geometric std factor
    log_sd = _hand_t([math.log(v[0]) for v in SHARP.values()])
    factor = math.exp(math.sqrt(sum((math.log(v[0]) - log_sd[0]) ** 2 for v in SHARP.values()) / 2))
    assert f"{centre:.4f} ×/÷ {factor:.3f}" in md and f"| {TOP} (geometric) |" in md

    with (out / "report.csv").open(encoding="utf-8") as handle:
        by_label = {row["group"]: row for row in csv.DictReader(handle)}
    sharp = by_label["model.norm=none"]
    assert sharp[f"{TOP}_ci_method"] == "log-t" and float(sharp[f"{TOP}_geo_mean"]) == pytest.approx(centre)
    assert float(sharp[f"{TOP}_ci_low"]) == pytest.approx(low) and float(sharp[f"{TOP}_ci_high"]) == pytest.approx(high)
    assert float(sharp[f"{TOP}_diff"]) == pytest.approx(mean)  # the log ratio the test is on
    assert float(sharp[f"{TOP}_ratio"]) == pytest.approx(math.exp(mean))
    assert float(sharp[f"{TOP}_ratio_ci_low"]) == pytest.approx(math.exp(d_low))
    assert sharp[f"{SHIFT}_ci_method"] == "t" and sharp[f"{SHIFT}_geo_mean"] == "" and sharp[f"{SHIFT}_ratio"] == ""
