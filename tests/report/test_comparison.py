"""Intervals over seeds and paired differences from the baseline, checked against hand computations.

Every expected number below is worked out by hand from the chosen metrics with the t table values as
literals (t_{0.975,1} = 12.706, t_{0.975,2} = 4.303); the code computes t exactly, hence the small
tolerances.
"""

from __future__ import annotations

import csv
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
from experiments.reporting.render import (
    LEGEND,
    STATISTICS_METHOD,
    interval_table,
    pairing_notes,
    render_markdown,
    write_csv,
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

    table = interval_table(summary, ["test/acc"])
    assert "| test/acc | a=new | 3 | 0.8400 | [0.5783, 1.1017] | +0.0400 * | [0.0152, 0.0648] | 3 |" in table
    assert "| test/acc | a=base | 3 | 0.8000 | [0.5516, 1.0484] | baseline | — | — |" in table

    md = render_markdown(summary, [tmp_path])
    assert STATISTICS_METHOD in md and LEGEND in md
    assert "Baseline: `a=base` (the first arm in sweep order; `--baseline` picks another)." in md
    assert "Every arm was paired with the baseline on all of its seeds." in md

    write_csv(summary, tmp_path / "report.csv")
    rows = read_csv(tmp_path / "report.csv")
    assert float(rows["a=base"]["test/acc_ci_low"]) == pytest.approx(0.80 - half_base, abs=1e-4)
    assert float(rows["a=base"]["test/acc_ci_high"]) == pytest.approx(0.80 + half_base, abs=1e-4)
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
    assert "| test/acc | a=new | 1 | 0.7400 | none (n=1) | +0.0400 | none (pairs=1) | 1 |" in table
    assert "| test/acc | a=base | 1 | 0.7000 | none (n=1) | baseline | — | — |" in table
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
    assert "| test/acc | a=base | 3 | 0.8000 | [0.5516, 1.0484] | -0.0400 * | [-0.0648, -0.0152] | 3 |" in printed
    assert "| test/acc | a=new | 3 | 0.8400 | [0.5783, 1.1017] | baseline | — | — |" in printed
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
