"""Student t quantiles and seed intervals (experiments.reporting.stats), against printed tables."""

from __future__ import annotations

import math

import pytest

from experiments.reporting.stats import Stat, mean_std, t_critical, t_quantile

# t_{0.975, df}, as printed (3 decimals) in every statistics textbook's table.
T_TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042}


@pytest.mark.parametrize(("df", "expected"), sorted(T_TABLE_975.items()))
def test_t_critical_matches_table(df: int, expected: float) -> None:
    assert t_critical(df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.975, df) == t_critical(df)


def test_t_quantile_other_levels_match_table() -> None:
    assert t_critical(1, confidence=0.99) == pytest.approx(63.657, abs=5e-4)
    assert t_critical(5, confidence=0.90) == pytest.approx(2.015, abs=5e-4)
    assert t_critical(20, confidence=0.99) == pytest.approx(2.845, abs=5e-4)
    assert t_critical(1000) == pytest.approx(1.962, abs=5e-4)  # close to the normal 1.960


@pytest.mark.parametrize("p", [0.6, 0.75, 0.9, 0.95, 0.975, 0.995, 0.9995])
def test_t_quantile_closed_forms_for_one_and_two_df(p: float) -> None:
    # df=1 is the Cauchy distribution; df=2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)


def test_t_quantile_symmetry_median_and_bad_input() -> None:
    assert t_quantile(0.025, 4) == -t_quantile(0.975, 4)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-15)
    for p, df in ((0.0, 3), (1.0, 3), (0.9, 0), (0.9, 2.5)):
        with pytest.raises(ValueError):
            t_quantile(p, df)


def test_t_quantile_agrees_with_scipy_when_available() -> None:
    stats = pytest.importorskip("scipy.stats")  # a cross-check only: the report never imports scipy
    for df in range(1, 41):
        for p in (0.55, 0.9, 0.975, 0.999):
            assert t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-10)


def test_mean_std_interval_hand_computed() -> None:
    stat = mean_std([0.90, 0.92, 0.94])  # mean 0.92, s 0.02, n 3, df 2
    half = 4.303 * 0.02 / math.sqrt(3)  # = 0.04969
    assert stat.half_width == pytest.approx(half, rel=1e-4)
    assert stat.ci_low == pytest.approx(0.92 - half, abs=1e-5)
    assert stat.ci_high == pytest.approx(0.92 + half, abs=1e-5)
    two = mean_std([1.0, 2.0])  # mean 1.5, s = sqrt(0.5), df 1
    assert two.half_width == pytest.approx(12.706 * math.sqrt(0.5) / math.sqrt(2), rel=1e-4)  # = 6.353


def test_one_value_has_no_interval_and_identical_values_a_point() -> None:
    single = mean_std([0.5])
    assert single.half_width is None and single.ci_low is None and single.ci_high is None
    assert not single.excludes_zero
    same = mean_std([2.0, 2.0, 2.0])
    assert (same.std, same.half_width, same.ci_low, same.ci_high) == (0.0, 0.0, 2.0, 2.0)
    assert mean_std([]).half_width is None
    assert math.isnan(mean_std([1.0, float("nan")]).half_width or 0.0)


def test_excludes_zero() -> None:
    assert Stat(3, 0.04, 0.01, 0.02).excludes_zero  # [0.02, 0.06]
    assert Stat(3, -0.04, 0.01, 0.02).excludes_zero  # [-0.06, -0.02]
    assert not Stat(3, 0.01, 0.01, 0.02).excludes_zero  # [-0.01, 0.03]
    assert not Stat(3, 0.02, 0.01, 0.02).excludes_zero  # [0, 0.04]: touching 0 is not excluding it
    assert not Stat(3, float("nan"), float("nan"), float("nan")).excludes_zero
