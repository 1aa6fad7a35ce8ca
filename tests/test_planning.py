"""The seed planner (``report --plan``) and the sequential rule of ``hydra/sweeper=seeds``, as pure functions.

The power numbers are checked against a published table value (G*Power's one-sample t: d = 0.5, two-sided
α = 0.05, power 0.8 needs 34), statsmodels' own ``solve_power`` and the noncentral t computed by hand with scipy;
the plan on fake runs of known differences; the sequential rule on given p-values and, by simulation under the
null, for the error rate it promises (and that testing every look at the fixed-n level breaks).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from experiments.reporting.aggregate import summarize
from experiments.reporting.inference import holm, paired_test
from experiments.reporting.planning import (
    SequentialRule,
    add_plan_arguments,
    look_level,
    look_sizes,
    pairs_needed,
    plan,
    plan_text,
    seed_differences,
)
from experiments.reporting.runs import RunResult


def nct_power(d: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample t-test, by hand: P(|T| > t_crit), T noncentral t(n − 1, d·√n)."""
    critical = stats.t.ppf(1 - alpha / 2, n - 1)
    return float(stats.nct.sf(critical, n - 1, d * math.sqrt(n)) + stats.nct.cdf(-critical, n - 1, d * math.sqrt(n)))


# ------------------------------------------------------------------------------------------------- power


def test_pairs_needed_matches_the_published_value_statsmodels_and_the_noncentral_t() -> None:
    from statsmodels.stats.power import TTestPower

    # G*Power, one-sample t (two-sided), d = 0.5, α = 0.05, power 0.8: total sample size 34 (actual power 0.8078)
    assert pairs_needed(0.5, 1.0, alpha=0.05, power=0.8) == 34
    assert pairs_needed(0.01, 0.02, alpha=0.05, power=0.8) == 34  # only d = |Δ|/s_d matters
    assert math.ceil(TTestPower().solve_power(effect_size=0.5, nobs=None, alpha=0.05, power=0.8)) == 34
    assert nct_power(0.5, 34, 0.05) == pytest.approx(0.8078, abs=1e-4)
    assert nct_power(0.5, 33, 0.05) < 0.8
    for d, alpha in ((1.0, 0.025), (0.3, 0.0167), (2.0, 0.05)):  # the smallest whole n reaching the power
        n = pairs_needed(d, 1.0, alpha=alpha)
        assert n is not None and nct_power(d, n, alpha) >= 0.8 > nct_power(d, n - 1, alpha), (d, alpha, n)


def test_pairs_needed_is_a_whole_number_of_pairs_where_few_suffice() -> None:
    # d = 5 at α = 0.025: 2 pairs (one degree of freedom, t_crit = 25.5) have power 0.22, 3 pairs 0.85; the
    # continuous root-finder's answer alone (2.2 in statsmodels 0.15) would round to a plan that fails
    assert nct_power(5.0, 2, 0.025) < 0.8 <= nct_power(5.0, 3, 0.025)
    assert pairs_needed(5.0, 1.0, alpha=0.025) == 3
    assert pairs_needed(50.0, 1.0, alpha=0.05) == 2  # never below two: a t statistic needs a spread
    assert pairs_needed(-0.5, 1.0, alpha=0.05) == 34  # the sign does not matter (two-sided)


def test_the_power_stays_finite_where_the_noncentral_t_library_gives_nan() -> None:
    from experiments.reporting.planning import _power

    # d = 23 on 2 pairs: scipy's nct gives NaN here; the power by simulation of T = (Z + δ)/√(V/ν)
    assert math.isnan(stats.nct.cdf(-stats.t.ppf(0.9875, 1), 1, 23 * math.sqrt(2)))
    rng = np.random.default_rng(0)
    t = (rng.normal(size=400_000) + 23 * math.sqrt(2)) / np.sqrt(rng.chisquare(1, size=400_000))
    simulated = float(np.mean(np.abs(t) > stats.t.ppf(0.9875, 1)))
    assert _power(23.0, 2, 0.025) == pytest.approx(simulated, abs=0.004)  # simulation's standard error: 0.0006
    assert _power(0.5, 34, 0.05) == pytest.approx(nct_power(0.5, 34, 0.05), abs=1e-12)


def test_pairs_needed_says_none_when_it_cannot_be_computed() -> None:
    assert pairs_needed(0.1, 0.0, alpha=0.05) is None  # no spread
    assert pairs_needed(0.0, 1.0, alpha=0.05) is None  # nothing to detect
    assert pairs_needed(math.nan, 1.0, alpha=0.05) is None
    assert pairs_needed(1e-6, 1.0, alpha=0.05) is None  # more than MAX_PAIRS


# ----------------------------------------------------------------------------------------------- the plan

BASE = (0.80, 0.85, 0.90, 0.82)
#: the clear arm: +0.10 on every seed, give or take 0.005; the noisy one: +0.01 on average with ±0.03 swings
CLEAR = tuple(b + 0.10 + e for b, e in zip(BASE, (0.005, -0.005, 0.0, 0.003), strict=True))
NOISY = tuple(b + e for b, e in zip(BASE, (0.04, -0.03, 0.035, -0.005), strict=True))


def runs_of(arm: str, values: tuple[float, ...]) -> list[RunResult]:
    return [RunResult(Path(f"{arm}-{seed}"), "completed", overrides=[f"pooling={arm}", f"seed={seed}"],
                      overrides_known=True, seed=seed, metrics={"test/acc": value})
            for seed, value in enumerate(values)]


def summary():
    runs = runs_of("max", BASE) + runs_of("avg", CLEAR) + runs_of("stride", NOISY)
    return summarize(runs, baseline="pooling=max")


def test_the_plan_resolves_a_clear_effect_and_asks_more_seeds_for_a_noisy_one() -> None:
    summarized = summary()
    plans = {p.arm: p for p in plan(summarized, min_effect=0.01)}
    for group in summarized.groups:  # the report's own tests, not a second computation that could drift
        if group.pairing is not None:
            assert plans[group.label].test == group.pairing.tests["test/acc"]
    assert set(plans) == {"pooling=avg", "pooling=stride"}
    clear, noisy = plans["pooling=avg"], plans["pooling=stride"]
    diffs_clear = [c - b for c, b in zip(CLEAR, BASE, strict=True)]
    diffs_noisy = [c - b for c, b in zip(NOISY, BASE, strict=True)]
    # the tests are the paired tests of these differences, Holm over the two comparisons
    raw = [paired_test(diffs_clear).p_value, paired_test(diffs_noisy).p_value]
    assert [clear.test.p_value, noisy.test.p_value] == pytest.approx(raw)
    assert [clear.test.p_holm, noisy.test.p_holm] == pytest.approx(holm(raw))
    assert clear.test.mean == pytest.approx(0.10075) and clear.n == 4 and clear.family == 2
    assert clear.resolved and not noisy.resolved
    # seeds: planned at Holm's strictest step, α/2, with the observed sd of the differences
    assert clear.level == pytest.approx(0.025)
    assert clear.sd == pytest.approx(float(np.std(diffs_clear, ddof=1)))
    assert clear.pairs_observed == pairs_needed(clear.test.mean, clear.sd, alpha=0.025) <= clear.n
    assert noisy.pairs_observed == pairs_needed(noisy.test.mean, noisy.sd, alpha=0.025)
    assert noisy.pairs_observed > noisy.n and noisy.pairs_observed > 50
    # the smallest effect of interest (0.01) is smaller than the clear arm's observed one: more seeds for it
    assert clear.pairs_min_effect == pairs_needed(0.01, clear.sd, alpha=0.025) > clear.pairs_observed


def test_the_plan_text_states_its_assumptions_the_floor_and_every_comparison() -> None:
    text = plan_text(summary(), min_effect=0.01)
    header = text.splitlines()[0]
    for words in ("paired t-test", "α = 0.05", "Holm over the 2 comparisons", "power 0.8", "α/2 = 0.025",
                  "pooling=max"):
        assert words in header, words
    # 2^(1−n) ≤ 0.025 first at n = 7 (2^−6 = 0.0156; 2^−5 = 0.031); with 4 pairs the floor is 2^−3
    assert "at least 7 seeds" in text and "(0.125 at n = 4)" in text
    rows = [line for line in text.splitlines() if line.startswith("| pooling=")]
    assert len(rows) == 2 and "seeds for Δ = ±0.01" in text
    assert all(row.count("|") == 10 for row in rows)  # 9 columns: no stray bar
    clear = next(row for row in rows if "avg" in row)
    assert "| yes |" in clear and "| 0.1007 |" in clear and "enough" in clear  # 0.10075 to 4 places
    assert "| no |" in next(row for row in rows if "stride" in row)
    # an unresolved comparison points at the sweeper, naming the baseline as it takes it
    assert "hydra/sweeper=seeds" in text and "'hydra.sweeper.baseline={pooling:max}'" in text
    assert "--min-effect" in plan_text(summary(), min_effect=None)  # without it, the plan says how to ask


def test_a_plan_with_nothing_to_compare_says_why() -> None:
    alone = summarize(runs_of("max", BASE))
    assert plan(alone) == []
    assert "nothing to plan" in plan_text(alone, min_effect=None) and "one arm" in plan_text(alone, min_effect=None)


def test_differences_pair_completed_runs_by_seed_and_average_repeats() -> None:
    arm = runs_of("avg", (0.5, 0.7, 0.9)) + [RunResult(Path("x"), "completed", seed=0, metrics={"test/acc": 0.7})]
    arm.append(RunResult(Path("f"), "failed", seed=1, metrics={"test/acc": 0.0}))  # a failed run is no value
    base = runs_of("max", (0.4, 0.6))
    assert seed_differences(arm, base, "test/acc") == pytest.approx([0.2, 0.1])  # seed 0: (0.5 + 0.7)/2 − 0.4


def test_the_plan_options_parse_and_a_bad_min_effect_is_one_sentence(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="report")
    add_plan_arguments(parser)
    args = parser.parse_args(["--plan", "--min-effect", "0.01"])
    assert args.plan is True and args.min_effect == 0.01
    assert parser.parse_args([]).plan is False and parser.parse_args([]).min_effect is None
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--plan", "--min-effect", "-1"])
    assert exit_.value.code == 2
    assert "--min-effect=-1 is invalid: " in capsys.readouterr().err


# ------------------------------------------------------------------------------------- the sequential rule


def test_looks_and_their_level() -> None:
    assert look_sizes(3, 2, 10) == [3, 5, 7, 9, 10]  # the cap is always the last look
    assert look_sizes(3, 3, 9) == [3, 6, 9]
    assert look_sizes(5, 2, 5) == [5]  # a fixed-n design: one look
    for bad in ((1, 1, 5), (3, 0, 5), (4, 1, 3)):
        with pytest.raises(ValueError):
            look_sizes(*bad)
    assert look_level(0.05, 2, 5) == pytest.approx(0.005)
    rule = SequentialRule(alpha=0.05, comparisons=2, looks=5)
    assert rule.level == pytest.approx(0.005) and rule.confidence == pytest.approx(0.995)


def test_the_rule_stops_each_comparison_at_its_first_look_below_the_level() -> None:
    rule = SequentialRule(alpha=0.05, comparisons=2, looks=3)  # level 0.05/6 = 0.00833
    looks = [{"a": 0.01, "b": 0.001}, {"a": 0.008, "b": 0.9}, {"a": 0.0001}]
    # b: 0.001 < 0.00833 at the first look; its later p is not looked at. a: 0.01 is a fixed-n 0.05/2 "success"
    # but not below the sequential level; 0.008 is, at the second look
    assert rule.stops(looks) == {"a": 1, "b": 0}
    assert rule.stops([{"a": 0.05 / 6}, {"a": None}, {"a": math.nan}]) == {"a": None}  # equal is not below
    with pytest.raises(ValueError, match="4 looks given, 3 planned"):
        rule.stops(looks + [{}])


def test_the_rule_keeps_the_familywise_error_under_alpha_where_testing_every_look_does_not() -> None:
    """Under the null (no arm differs), 3 arms against a baseline, looks at 3, 5, 7, 9, 10 seeds: how often is any
    comparison ever declared resolved? The rule promises ≤ α = 0.05; the fixed-n Bonferroni level α/m at every
    look is what a naive sweep would do, and it inflates the error."""
    rng = np.random.default_rng(0)
    sims, m, sizes = 4000, 3, look_sizes(3, 2, 10)
    rule = SequentialRule(alpha=0.05, comparisons=m, looks=len(sizes))
    naive = SequentialRule(alpha=0.05, comparisons=m, looks=1)
    # seed effects shared by all arms, plus each arm's own noise: differences to the baseline are correlated
    baseline = rng.normal(size=(sims, sizes[-1]))
    arms = rng.normal(size=(sims, m, sizes[-1]))
    diffs = arms - baseline[:, None, :]
    p_by_look = []
    for n in sizes:
        d = diffs[:, :, :n]
        t = d.mean(axis=2) / (d.std(axis=2, ddof=1) / math.sqrt(n))
        p_by_look.append(2 * stats.t.sf(np.abs(t), n - 1))
    errors = {"rule": 0, "naive": 0}
    for s in range(sims):
        looks = [{f"arm{j}": float(p[s, j]) for j in range(m)} for p in p_by_look]
        errors["rule"] += any(v is not None for v in rule.stops(looks).values())
        errors["naive"] += any(v is not None for v in naive.stops(looks[:1]).values()) or any(
            naive.resolves(p) for look in looks for p in look.values())
    rate = {k: v / sims for k, v in errors.items()}
    assert rate["rule"] <= 0.05  # the promise (its standard error here is 0.0034)
    assert rate["naive"] > 0.06  # five looks at α/m each: the error the rule prevents
