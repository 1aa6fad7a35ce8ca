"""Intervals over seeds and paired differences from the baseline, checked against hand computations.

Every expected number below is worked out by hand from the chosen metrics with the t table values as
literals (t_{0.975,1} = 12.706, t_{0.975,2} = 4.303); the code computes t exactly, hence the small
tolerances.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from experiments.errors import ConfigError
from experiments.report import main
from experiments.reporting.aggregate import (
    Summary,
    summarize,
)
from experiments.reporting.comparison import find_arm, parse_arm_spec, split_top_level
from experiments.reporting.csv_table import write_csv
from experiments.reporting.inference import holm, per_image_miou_interval, wilson_interval
from experiments.reporting.render import (
    LEGEND,
    STATISTICS_METHOD,
    interval_table,
    pairing_notes,
    render_markdown,
)
from experiments.reporting.runs import collect_runs

from .conftest import write_sweep

BASE = {1: 0.70, 2: 0.80, 3: 0.90}  # test/acc of arm a=base per seed
NEW = {1: 0.74, 2: 0.83, 3: 0.95}  # test/acc of arm a=new per seed


def acc(value: float) -> dict[str, float]:
    return {"test/acc": value, "val/acc": value}


def two_arms(root: Path, base: dict[int, float] = BASE, new: dict[int, float | None] = NEW) -> Path:
    """Arm a=base first (the default baseline), then a=new; ``None`` writes a failed run for that seed."""
    return write_sweep(
        root,
        {
            ("a=base",): {seed: acc(v) for seed, v in base.items()},
            ("a=new",): {seed: None if v is None else acc(v) for seed, v in new.items()},
        },
    )


def by_label(summary: Summary) -> dict:
    return {group.label: group for group in summary.groups}


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["group"]: row for row in csv.DictReader(handle)}


def test_intervals_and_paired_difference_by_hand(tmp_path: Path) -> None:
    summary = summarize(collect_runs([two_arms(tmp_path)]))
    groups = by_label(summary)
    base, new = groups["a=base"], groups["a=new"]
    assert summary.baseline is base  # the first arm of the sweep, although a=new sorts first
    assert [g.label for g in summary.groups] == ["a=new", "a=base"]

    # a=base: mean 0.80; deviations -0.1, 0, 0.1 -> s = sqrt(0.02/2) = 0.1
    half_base = 4.303 * 0.1 / math.sqrt(3)  # = 0.24843
    stat = base.stats["test/acc"]
    assert (stat.n, stat.mean, stat.std) == (3, pytest.approx(0.80), pytest.approx(0.1))
    assert stat.ci_low == pytest.approx(0.80 - half_base, abs=1e-4)  # 0.5516
    assert stat.ci_high == pytest.approx(0.80 + half_base, abs=1e-4)  # 1.0484

    # a=new: mean 2.52/3 = 0.84; deviations -0.10, -0.01, 0.11 -> s = sqrt(0.0222/2) = 0.10536
    s_new = math.sqrt((0.10**2 + 0.01**2 + 0.11**2) / 2)
    half_new = 4.303 * s_new / math.sqrt(3)  # = 0.26175
    stat = new.stats["test/acc"]
    assert stat.mean == pytest.approx(0.84) and stat.std == pytest.approx(s_new)
    assert (stat.ci_low, stat.ci_high) == (
        pytest.approx(0.84 - half_new, abs=1e-4),
        pytest.approx(0.84 + half_new, abs=1e-4),
    )

    # paired: d = 0.04, 0.03, 0.05 -> mean 0.04, s_d = 0.01, half = 4.303 * 0.01 / sqrt(3) = 0.024843
    half_d = 4.303 * 0.01 / math.sqrt(3)
    assert new.pairing is not None and base.pairing is None
    diff = new.pairing.diffs["test/acc"]
    assert (diff.n, diff.mean, diff.std) == (3, pytest.approx(0.04), pytest.approx(0.01))
    assert diff.ci_low == pytest.approx(0.04 - half_d, abs=1e-5)  # 0.01516 > 0: significant
    assert diff.ci_high == pytest.approx(0.04 + half_d, abs=1e-5)  # 0.06484
    assert diff.excludes_zero
    # Unpaired, the two means' intervals overlap almost completely: pairing is what finds the effect.
    assert new.stats["test/acc"].ci_low < base.stats["test/acc"].ci_high

    # The Student-t interval of a=base and a=new leaves [0, 1] (1.0484, 1.1017); the report shows the logit-t one:
    # z = logit(0.7, 0.8, 0.9) = 0.8473, 1.3863, 2.1972 -> z̄ 1.4769, s_z 0.6798, half 4.303·s_z/√3 = 1.6888
    # -> [expit(-0.2119), expit(3.1657)] = [0.4472, 0.9595]
    z = [math.log(v / (1 - v)) for v in (0.7, 0.8, 0.9)]
    z_mean, z_sd = sum(z) / 3, math.sqrt(sum((x - sum(z) / 3) ** 2 for x in z) / 2)
    expit = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    interval = base.intervals["test/acc"]
    assert interval.method == "logit-t"
    assert interval.low == pytest.approx(expit(z_mean - 4.303 * z_sd / math.sqrt(3)), abs=1e-4)
    assert interval.high == pytest.approx(expit(z_mean + 4.303 * z_sd / math.sqrt(3)), abs=1e-4)
    # paired t: t = 0.04 / (0.01/√3) = 6.928 on 2 df, two-sided p = 1 − t/√(2 + t²) = 0.0202 (df=2 closed form);
    # one comparison, so Holm changes nothing; 3 pairs: the exact sign-flip p is 2/8 = 0.25, not shown below 6
    test = new.pairing.tests["test/acc"]
    t = 0.04 / (0.01 / math.sqrt(3))
    assert test.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert test.p_holm == test.p_value and test.p_exact == 0.25 and test.resolved

    table = interval_table(summary, ["test/acc"])
    assert ("| test/acc | a=new | 3 | 0.8400 | [0.3609, 0.9865] | logit-t | — | +0.0400 * | [0.0152, 0.0648] | 3 | "
            "0.020 | 0.020 | n<6 |") in table
    assert "| test/acc | a=base | 3 | 0.8000 | [0.4474, 0.9595] | logit-t | — | baseline | — | — | — | — | — |" in table

    md = render_markdown(summary, [tmp_path])
    assert STATISTICS_METHOD in md and LEGEND in md
    assert "Baseline: `a=base` (the first arm in sweep order; `--baseline` picks another)." in md
    assert "Every arm was paired with the baseline on all of its seeds." in md

    write_csv(summary, tmp_path / "report.csv")
    rows = read_csv(tmp_path / "report.csv")
    assert float(rows["a=base"]["test/acc_ci_low"]) == pytest.approx(interval.low)  # the bounded interval
    assert float(rows["a=base"]["test/acc_ci_high"]) == pytest.approx(interval.high)
    assert rows["a=base"]["test/acc_ci_method"] == "logit-t" and rows["a=base"]["test/acc_test_halfwidth"] == ""
    assert float(rows["a=new"]["test/acc_diff_p"]) == pytest.approx(test.p_value)
    assert float(rows["a=new"]["test/acc_diff_p_holm"]) == pytest.approx(test.p_value)
    assert rows["a=new"]["test/acc_diff_p_signflip"] == "0.25" and rows["a=base"]["test/acc_diff_p"] == ""
    assert rows["a=base"]["test/acc_diff"] == "" and rows["a=base"]["baseline"] == "true"
    assert float(rows["a=new"]["test/acc_diff"]) == pytest.approx(0.04)
    assert float(rows["a=new"]["test/acc_diff_ci_low"]) == pytest.approx(0.04 - half_d, abs=1e-5)
    assert float(rows["a=new"]["test/acc_diff_ci_high"]) == pytest.approx(0.04 + half_d, abs=1e-5)
    assert rows["a=new"]["test/acc_diff_n"] == "3" and rows["a=new"]["paired_seeds"] == "1;2;3"
    assert rows["a=new"]["n"] == "3" and rows["a=new"]["test/acc_std"] != ""  # old columns kept


def test_interval_containing_zero_has_no_marker(tmp_path: Path) -> None:
    summary = summarize(collect_runs([two_arms(tmp_path, new={1: 0.69, 2: 0.82, 3: 0.90})]))
    # d = -0.01, 0.02, 0.00 -> mean 0.01/3 = 0.003333; s_d = sqrt((0.013333^2 + 0.016667^2 + 0.003333^2)/2)
    mean_d = 0.01 / 3
    s_d = math.sqrt(((-0.01 - mean_d) ** 2 + (0.02 - mean_d) ** 2 + (0.0 - mean_d) ** 2) / 2)  # = 0.015275
    half_d = 4.303 * s_d / math.sqrt(3)  # = 0.037949
    diff = by_label(summary)["a=new"].pairing.diffs["test/acc"]
    assert diff.mean == pytest.approx(mean_d) and diff.std == pytest.approx(s_d)
    assert (diff.ci_low, diff.ci_high) == (
        pytest.approx(mean_d - half_d, abs=1e-5),
        pytest.approx(mean_d + half_d, abs=1e-5),
    )
    assert not diff.excludes_zero
    assert "| +0.0033 | [-0.0346, 0.0413] | 3 |" in interval_table(summary, ["test/acc"])


def test_missing_seeds_are_dropped_from_the_pairing_and_reported(tmp_path: Path) -> None:
    # a=new: seed 3 failed, seed 4 only in a=new; the baseline has seeds 1, 2, 3.
    summary = summarize(collect_runs([two_arms(tmp_path, new={1: 0.74, 2: 0.83, 3: None, 4: 0.99})]))
    new = by_label(summary)["a=new"]
    assert new.n == 3 and new.n_failed == 1
    # The arm's own interval still uses all its completed seeds: mean (0.74 + 0.83 + 0.99)/3 = 0.85333.
    assert new.stats["test/acc"].mean == pytest.approx(2.56 / 3)
    pairing = new.pairing
    assert (pairing.seeds, pairing.dropped_baseline, pairing.dropped_arm) == ([1, 2], [3], [4])
    # paired on seeds 1, 2 only: d = 0.04, 0.03 -> mean 0.035, s_d = sqrt(2 * 0.005^2) = 0.0070711, df 1
    s_d = math.sqrt((0.005**2 + 0.005**2) / 1)
    half_d = 12.706 * s_d / math.sqrt(2)  # = 0.06353
    diff = pairing.diffs["test/acc"]
    assert (diff.n, diff.mean, diff.std) == (2, pytest.approx(0.035), pytest.approx(s_d))
    assert diff.ci_low == pytest.approx(0.035 - half_d, abs=1e-4)  # -0.0285: includes 0
    assert diff.ci_high == pytest.approx(0.035 + half_d, abs=1e-4)
    assert not diff.excludes_zero
    notes = pairing_notes(summary)
    assert notes == [
        "`a=new` vs baseline `a=base`: paired on seeds 1, 2; dropped baseline seed 3 (`a=new` did not "
        "complete it); dropped `a=new` seed 4 (the baseline did not complete it)."
    ]
    md = render_markdown(summary, [tmp_path])
    assert f"- {notes[0]}" in md
    write_csv(summary, tmp_path / "report.csv")
    row = read_csv(tmp_path / "report.csv")["a=new"]
    assert row["paired_seeds"] == "1;2" and row["seeds"] == "1;2;4" and row["test/acc_diff_n"] == "2"


def test_single_seed_gives_no_interval(tmp_path: Path) -> None:
    summary = summarize(collect_runs([two_arms(tmp_path, base={1: 0.70}, new={1: 0.74})]))
    new = by_label(summary)["a=new"]
    assert new.stats["test/acc"].half_width is None and new.stats["test/acc"].ci_low is None
    diff = new.pairing.diffs["test/acc"]
    assert (diff.n, diff.mean, diff.ci_low) == (1, pytest.approx(0.04), None)
    table = interval_table(summary, ["test/acc"])
    assert "| test/acc | a=new | 1 | 0.7400 | none (n=1) | — | — | +0.0400 | none (pairs=1) | 1 | — | — | n<6 |" \
        in table
    assert "| test/acc | a=base | 1 | 0.7000 | none (n=1) | — | — | baseline | — | — | — | — | — |" in table
    write_csv(summary, tmp_path / "report.csv")
    row = read_csv(tmp_path / "report.csv")["a=new"]
    assert row["test/acc_ci_low"] == row["test/acc_ci_high"] == ""
    assert float(row["test/acc_diff"]) == pytest.approx(0.04)
    assert row["test/acc_diff_ci_low"] == row["test/acc_diff_ci_high"] == "" and row["test/acc_diff_n"] == "1"


def test_baseline_option_picks_another_arm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = two_arms(tmp_path / "sweep")
    summary = summarize(collect_runs([sweep]), baseline="a=new")
    base = by_label(summary)["a=base"]
    assert summary.baseline is by_label(summary)["a=new"] and summary.baseline.pairing is None
    diff = base.pairing.diffs["test/acc"]  # d = -0.04, -0.03, -0.05: the same interval mirrored
    half_d = 4.303 * 0.01 / math.sqrt(3)
    assert diff.mean == pytest.approx(-0.04)
    assert (diff.ci_low, diff.ci_high) == (
        pytest.approx(-0.04 - half_d, abs=1e-5),
        pytest.approx(-0.04 + half_d, abs=1e-5),
    )

    out = tmp_path / "out"
    assert main([str(sweep), "--baseline", "a=new", "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert ("| test/acc | a=base | 3 | 0.8000 | [0.4474, 0.9595] | logit-t | — | -0.0400 * | [-0.0648, -0.0152] | 3 | "
            "0.020 | 0.020 | n<6 |") in printed
    assert "| test/acc | a=new | 3 | 0.8400 | [0.3609, 0.9865] | logit-t | — | baseline | — |" in printed
    assert "CI methods: `test/acc` (bounded to [0, 1]): logit-t at n = 3." in printed
    assert "an exact sign-flip test cannot reach p < 0.05 below 6 seeds" in printed
    md = (out / "report.md").read_text()
    assert "Baseline: `a=new` (chosen with `--baseline`)." in md
    assert read_csv(out / "report.csv")["a=new"]["baseline"] == "true"


def test_baseline_spec_matching() -> None:
    arms = [("a=1", "lr=0.1"), ("a=1", "lr=0.01"), ("a=2", "lr=0.1"), ()]
    assert find_arm("a=1,lr=0.01", arms) == 1
    assert find_arm("lr=1e-2,a=1", arms) == 1  # order-free, numbers compared as numbers
    assert find_arm("+a=2", arms) == 2  # Hydra's + prefix is not part of the key
    assert find_arm("(default)", arms) == 3
    assert find_arm("a=2,data=shapes", arms, constants=["data=shapes"]) == 2  # a sweep constant may be named
    assert split_top_level("model.channels=[16,32],a=1") == ["model.channels=[16,32]", "a=1"]
    assert parse_arm_spec("model.channels=[16,32],a=1") == [("model.channels", "[16,32]"), ("a", "1")]
    with pytest.raises(ConfigError, match=r"it matches 2 arms \(a=1,lr=0.1; a=1,lr=0.01\)"):
        find_arm("a=1", arms)
    with pytest.raises(ConfigError, match="no arm of this sweep has these overrides"):
        find_arm("a=3", arms)
    with pytest.raises(ConfigError, match="'relu' is not a key=value override"):
        find_arm("relu", arms)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("a=nope", "no arm of this sweep has these overrides; name one of: a=base; a=new."),
        ("relu", "'relu' is not a key=value override"),
    ],
)
def test_unknown_baseline_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, problem: str
) -> None:
    sweep = two_arms(tmp_path)
    assert main([str(sweep), "--baseline", spec, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --baseline={spec} is invalid: ") and problem in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (sweep / "report.md").exists()  # nothing is written for a bad argument


def test_cli_unknown_baseline_exit_status(tmp_path: Path) -> None:
    from .test_report_cli import run_cli

    result = run_cli(two_arms(tmp_path), "--baseline", "a=nope", "--no-plots")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --baseline=a=nope is invalid:") and "Traceback" not in result.stderr


def test_baseline_without_completed_runs_is_said(tmp_path: Path) -> None:
    sweep = two_arms(tmp_path, new={1: None, 2: None})
    summary = summarize(collect_runs([sweep]), baseline="a=new")
    assert all(group.pairing is None for group in summary.groups)
    assert pairing_notes(summary) == ["The baseline `a=new` has no completed run, so no difference was computed."]
    # by default the first arm with a completed run is the baseline
    default = summarize(collect_runs([sweep]))
    assert default.baseline is not None and default.baseline.label == "a=base"


def test_pairing_averages_repeated_seeds_and_leaves_out_unseeded_runs() -> None:
    from experiments.reporting.aggregate import run_value
    from experiments.reporting.comparison import pair_by_seed
    from experiments.reporting.runs import RunResult

    def run(seed: int | None, value: float) -> RunResult:
        return RunResult(Path("r"), "completed", seed=seed, metrics={"test/acc": value})

    # seed 1 twice in the arm (e.g. one sweep reported from two directories): (0.5 + 0.7)/2 = 0.6 is paired
    arm = [run(1, 0.5), run(1, 0.7), run(2, 0.9), run(None, 0.1)]
    baseline = [run(1, 0.4), run(2, 0.6), run(3, 0.8)]
    pairing = pair_by_seed(arm, baseline, ["test/acc"], run_value)
    assert (pairing.seeds, pairing.dropped_baseline, pairing.dropped_arm) == ([1, 2], [3], [])
    assert (pairing.unseeded, pairing.repeated, pairing.complete) == (1, [1], False)
    diff = pairing.diffs["test/acc"]  # d = 0.6 - 0.4, 0.9 - 0.6 = 0.2, 0.3
    assert (diff.n, diff.mean) == (2, pytest.approx(0.25))


def test_accuracies_near_one_get_bounded_intervals_test_noise_and_holm(tmp_path: Path) -> None:
    """Three arms near 100 % on 3 seeds: every interval stays in [0, 1] (the t one would not), each arm shows its
    runs' Wilson half-width from the recorded test count, and the two comparisons are one Holm family."""
    accs = {"a=base": (0.95, 0.97, 0.99), "a=x": (0.97, 0.98, 1.0), "a=y": (0.90, 0.96, 0.97)}
    sweep = write_sweep(tmp_path / "sweep", {(arm,): {s: acc(v) for s, v in zip((1, 2, 3), values, strict=True)}
                                             for arm, values in accs.items()})
    for path in sweep.rglob("metrics.json"):
        record = json.loads(path.read_text())
        record.update(test_count=500, class_names=[str(i) for i in range(10)])
        path.write_text(json.dumps(record))
    summary = summarize(collect_runs([sweep]))
    groups = by_label(summary)
    for label, values in accs.items():
        group = groups[label]
        interval = group.intervals["test/acc"]
        assert interval.method == "logit-t" and 0.0 < interval.low < interval.high < 1.0
        # the per-run noise: the mean of the Wilson half-widths of k = acc·500 of 500
        halves = [wilson_interval(v * 500, 500).half_width for v in values]
        assert group.noise["test/acc"].half_width == pytest.approx(sum(halves) / 3)
        assert group.noise["test/acc"].count == 500
    assert any(group.stats["test/acc"].ci_high > 1.0 for group in summary.groups)  # what the t interval would say
    tests = summary.tests("test/acc")
    assert len(tests) == 2 == len(summary.compared)
    assert [t.p_holm for t in tests] == holm([t.p_value for t in tests])

    md = render_markdown(summary, [sweep])
    noise = groups["a=x"].noise["test/acc"].half_width
    assert f"| logit-t | ±{noise:.4f} (Wilson, N=500) |" in md
    assert "CI methods: `test/acc` (bounded to [0, 1]): logit-t at n = 3" in md
    assert ("Holm over the k−1 = 2 comparisons with the baseline needs n ≥ 7 before an exact test can pass its first "
            "step (p ≤ 0.05/2)") in md
    assert "its smallest two-sided p is 2^(1−n): 0.25 at n = 3" in md
    write_csv(summary, tmp_path / "report.csv")
    row = read_csv(tmp_path / "report.csv")["a=x"]
    assert float(row["test/acc_test_halfwidth"]) == pytest.approx(noise) and row["test/acc_test_count"] == "500"
    assert 0.0 < float(row["test/acc_ci_low"]) < float(row["test/acc_ci_high"]) < 1.0
    holm_p = next(t.p_holm for g, t in zip(summary.compared, tests, strict=True) if g.label == "a=x")
    assert float(row["test/acc_diff_p_holm"]) == pytest.approx(holm_p)


def test_old_runs_take_their_test_count_from_the_confusion_matrix(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "sweep", {("a=1",): {1: acc(0.75), 2: acc(0.8)}})
    for path in sweep.rglob("metrics.json"):  # a run from before test_count: 40 test images in its matrix
        record = json.loads(path.read_text())
        record.update(confusion_matrix=[[15, 5], [5, 15]])
        path.write_text(json.dumps(record))
    runs = collect_runs([sweep])
    assert [(run.test_count, run.num_classes) for run in runs] == [(40, 2), (40, 2)]
    group = summarize(runs).groups[0]
    assert group.noise["test/acc"].counts == (40, 40)


def test_segmentation_runs_show_the_per_image_bootstrap_of_their_miou(tmp_path: Path) -> None:
    inter = [[50, 5], [40, 0], [45, 8], [60, 2]]
    union = [[60, 10], [50, 4], [55, 10], [65, 5]]
    sweep = write_sweep(tmp_path / "sweep", {("a=1",): {s: {"test/miou": 0.6 + 0.01 * s} for s in (1, 2, 3)}},
                        task="segmentation")
    for path in sorted(sweep.rglob("metrics.json"))[:2]:  # the third run has no per-image file (an older run)
        (path.parent / "test_per_image.json").write_text(json.dumps({"intersection": inter, "union": union}))
    group = summarize(collect_runs([sweep])).groups[0]
    noise = group.noise["test/miou"]
    expected = per_image_miou_interval(inter, union).half_width
    assert noise.method == "per-image bootstrap" and noise.counts == (4, 4)
    assert noise.half_width == pytest.approx(expected) and expected > 0
    assert group.intervals["test/miou"].method == "logit-t"


def test_the_exact_sign_flip_p_is_shown_from_six_pairs(tmp_path: Path) -> None:
    seeds = range(1, 7)
    sweep = two_arms(tmp_path, base={s: 0.80 + 0.01 * s for s in seeds}, new={s: 0.83 + 0.011 * s for s in seeds})
    summary = summarize(collect_runs([sweep]))
    test = summary.tests("test/acc")[0]
    assert test.n == 6 and test.p_exact == pytest.approx(2 / 64)  # every difference positive: the floor 2^(1−6)
    assert "| 0.031 |" in interval_table(summary, ["test/acc"]).splitlines()[2 + [g.label for g in summary.groups]
                                                                            .index("a=new")]
