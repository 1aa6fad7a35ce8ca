"""``--best-of KEY``: per-arm selection by validation metric only (experiments.reporting.selection)."""

from __future__ import annotations

import csv
import itertools
import math
import random
from pathlib import Path

import pytest

from experiments.errors import ConfigError
from experiments.report import main
from experiments.reporting.aggregate import Summary, summarize
from experiments.reporting.render import render_markdown
from experiments.reporting.runs import RunResult, collect_runs
from experiments.reporting.selection import choose, selection_metric, value_order

from .conftest import write_sweep

SEEDS = (1, 2, 3)
# (activation, lr) -> (val/acc per seed, test/acc per seed).  By validation relu wants lr=0.01 and gelu
# lr=0.1; by test it would be the other way round in both arms.
GRID = {
    ("relu", "0.1"): ((0.80, 0.81, 0.82), (0.95, 0.96, 0.97)),
    ("relu", "0.01"): ((0.90, 0.91, 0.92), (0.60, 0.61, 0.62)),
    ("gelu", "0.1"): ((0.85, 0.86, 0.87), (0.50, 0.52, 0.51)),
    ("gelu", "0.01"): ((0.70, 0.71, 0.72), (0.99, 0.98, 0.97)),
}


def write_grid(root: Path, grid: dict = GRID, test_values: list[float] | None = None) -> Path:
    """The 2 arms x 2 learning rates x 3 seeds sweep; ``test_values`` replaces the test/acc numbers in order."""
    tests = iter(test_values) if test_values is not None else None
    arms: dict[tuple[str, ...], dict] = {}
    for (activation, lr), (vals, test_accs) in grid.items():
        arms[(f"activation={activation}", f"optimizer.lr={lr}")] = {
            seed: {"val/acc": val, "test/acc": next(tests) if tests else test}
            for seed, val, test in zip(SEEDS, vals, test_accs, strict=True)
        }
    return write_sweep(root, arms)


def selected(summary: Summary) -> dict[str, str | None]:
    return {group.label: group.selected for group in summary.groups}


def test_validation_metric_selects_not_test(tmp_path: Path) -> None:
    summary = summarize(collect_runs([write_grid(tmp_path)]), best_of="optimizer.lr")
    assert summary.selection is not None
    assert (summary.selection.metric, summary.selection.maximize) == ("val/acc", True)
    assert selected(summary) == {"activation=relu": "0.01", "activation=gelu": "0.1"}
    # What selecting by test/acc would have picked instead -- the report must not.
    by_test = {act: max(("0.1", "0.01"), key=lambda lr, act=act: sum(GRID[(act, lr)][1])) for act in ("relu", "gelu")}
    assert by_test == {"relu": "0.1", "gelu": "0.01"}
    relu, gelu = (next(g for g in summary.groups if g.label == f"activation={a}") for a in ("relu", "gelu"))
    # Test metrics of the selected runs only: relu at 0.01 -> (0.60 + 0.61 + 0.62)/3 = 0.61, gelu at 0.1 -> 0.51.
    assert relu.n == 3 and {run.seed for run in relu.completed} == set(SEEDS)
    assert relu.stats["test/acc"].mean == pytest.approx(0.61)
    assert gelu.stats["test/acc"].mean == pytest.approx(0.51)
    assert all(run.metrics["val/acc"] >= 0.90 for run in relu.completed)  # none of the lr=0.1 runs
    # Paired differences use the selected runs: baseline relu (first arm) at 0.01, gelu at 0.1:
    # d = 0.50 - 0.60, 0.52 - 0.61, 0.51 - 0.62 = -0.10, -0.09, -0.11 -> mean -0.10, s_d 0.01
    half_d = 4.303 * 0.01 / math.sqrt(3)  # = 0.024843
    assert summary.baseline is relu
    diff = gelu.pairing.diffs["test/acc"]
    assert diff.mean == pytest.approx(-0.10)
    assert (diff.ci_low, diff.ci_high) == (
        pytest.approx(-0.10 - half_d, abs=1e-5),
        pytest.approx(-0.10 + half_d, abs=1e-5),
    )


def test_permuting_or_dropping_test_metrics_never_changes_the_selection(tmp_path: Path) -> None:
    original = [t for _, tests in GRID.values() for t in tests]
    rng = random.Random(0)
    permutations = [original[::-1], sorted(original), sorted(original, reverse=True)]
    permutations += [rng.sample(original, len(original)) for _ in range(5)]
    for index, values in enumerate(permutations):
        chosen = summarize(
            collect_runs([write_grid(tmp_path / str(index), test_values=values)]), best_of="optimizer.lr"
        )
        assert selected(chosen) == {"activation=relu": "0.01", "activation=gelu": "0.1"}, values
    # Without any test metric at all the choice is the same too.
    runs = collect_runs([write_grid(tmp_path / "full")])
    for run in runs:
        run.metrics = {k: v for k, v in run.metrics.items() if not k.startswith("test/")}
    assert selected(summarize(runs, best_of="optimizer.lr")) == {"activation=relu": "0.01", "activation=gelu": "0.1"}


def _runs(lr_scores: dict[str, tuple[float, ...]], metric: str = "val/acc", task: str = "classification") -> list:
    runs = []
    for lr, scores in lr_scores.items():
        for seed, score in enumerate(scores):
            runs.append(
                RunResult(
                    Path(f"{lr}/{seed}"),
                    "completed",
                    task=task,
                    overrides=[f"optimizer.lr={lr}", f"seed={seed}"],
                    overrides_known=True,
                    seed=seed,
                    metrics={metric: score, "test/acc": 1.0 - score},
                )
            )
    return runs


def test_ties_go_to_the_smallest_value_whatever_the_order() -> None:
    # Means are all 0.8 (up to rounding in the sums): the smallest learning rate wins.
    scores = {"0.1": (0.79, 0.80, 0.81), "0.001": (0.80, 0.80, 0.80), "0.01": (0.81, 0.80, 0.79)}
    for order in itertools.permutations(scores):
        runs = _runs({lr: scores[lr] for lr in order})
        choice = choose(runs, "optimizer.lr", "val/acc", maximize=True)
        assert choice.chosen is not None and choice.chosen.value == "0.001"
        assert [c.value for c in choice.candidates] == ["0.001", "0.01", "0.1"]  # numeric, not text, order
    assert sorted(["1e-3", "(default)", "0.1", "adam"], key=value_order) == ["(default)", "1e-3", "0.1", "adam"]


def test_loss_only_is_minimised_and_segmentation_uses_miou() -> None:
    runs = _runs({"0.1": (0.5, 0.6), "0.01": (0.3, 0.4)}, metric="val/loss")
    assert selection_metric(runs) == ("val/loss", False)
    summary = summarize(runs, best_of="optimizer.lr")
    assert selected(summary) == {"(default)": "0.01"}
    assert "(lower is better)" in render_markdown(summary, [Path("x")])

    seg = _runs({"0.1": (0.9, 0.9), "0.01": (0.8, 0.8)}, task="segmentation")  # val/acc prefers 0.1 ...
    for run in seg:  # ... val/miou prefers 0.01
        run.metrics["val/miou"] = 0.6 if run.overrides[0].endswith("0.01") else 0.4
    assert selection_metric(seg) == ("val/miou", True)
    assert selected(summarize(seg, best_of="optimizer.lr")) == {"(default)": "0.01"}
    assert selection_metric(_runs({"0.1": (0.9,)}, task="classification")) == ("val/acc", True)


def test_diverged_value_is_never_selected() -> None:
    runs = _runs({"0.1": (0.9, float("nan")), "0.01": (0.5, 0.6)})
    assert choose(runs, "optimizer.lr", "val/acc", maximize=True).chosen.value == "0.01"


def test_cli_best_of_table_selection_section_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = write_grid(tmp_path / "sweep")
    out = tmp_path / "out"
    assert main([str(sweep), "--best-of", "optimizer.lr", "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| group | best optimizer.lr | n | test/acc |")
    assert "| activation=relu | 0.01 | 3 | 0.6100 ± 0.0100 |" in printed
    assert "| activation=gelu | 0.1 | 3 | 0.5100 ± 0.0100 |" in printed
    md = (out / "report.md").read_text()
    assert "## Selection (`--best-of optimizer.lr`)" in md
    assert "| activation=relu | 0.01 | selected | 3 | 0.9100 ± 0.0100 |" in md
    assert "| activation=relu | 0.1 |  | 3 | 0.8100 ± 0.0100 |" in md
    assert "best mean `val/acc` over seeds (higher is better)" in md and "no test metric takes part" in md
    with (out / "report.csv").open(newline="") as handle:
        rows = {row["group"]: row for row in csv.DictReader(handle)}
    assert rows["activation=relu"]["best_optimizer.lr"] == "0.01"
    assert rows["activation=gelu"]["best_optimizer.lr"] == "0.1"
    assert float(rows["activation=gelu"]["test/acc_diff"]) == pytest.approx(-0.10)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("optimizer.momentum", "no run sets it as an override; name one of: activation, optimizer.lr."),
        ("seed", "seeds are replicates, not a setting to select"),
    ],
)
def test_unknown_best_of_key_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, problem: str
) -> None:
    sweep = write_grid(tmp_path)
    assert main([str(sweep), "--best-of", key, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --best-of={key} is invalid: ") and problem in err and err.count("\n") == 1
    assert not (sweep / "report.md").exists()


def test_baseline_names_an_arm_without_the_best_of_key(tmp_path: Path) -> None:
    runs = collect_runs([write_grid(tmp_path)])
    summary = summarize(runs, baseline="activation=gelu", best_of="optimizer.lr")
    assert summary.baseline is not None and summary.baseline.label == "activation=gelu"
    with pytest.raises(ConfigError, match="--baseline=activation=gelu,optimizer.lr=0.1 is invalid"):
        summarize(runs, baseline="activation=gelu,optimizer.lr=0.1", best_of="optimizer.lr")
