"""Grouping, statistics and table rendering (experiments.reporting.aggregate)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from experiments.reporting.aggregate import (
    mean_std,
    summarize,
    sweep_constants,
)
from experiments.reporting.comparison import DEFAULT_LABEL
from experiments.reporting.csv_table import write_csv
from experiments.reporting.curves import curve_stats, gradient_flow_stats
from experiments.reporting.render import (
    format_stat,
    markdown_table,
    render_markdown,
)
from experiments.reporting.runs import RunResult, collect_runs

from .conftest import completed_metrics, make_sweep, write_run


def _run(overrides: list[str], known: bool = True) -> RunResult:
    return RunResult(path=Path("x"), status="completed", overrides=overrides, overrides_known=known)


def test_mean_std_hand_computed() -> None:
    stat = mean_std([0.90, 0.92, 0.94])
    assert stat.n == 3
    assert stat.mean == pytest.approx(0.92)
    assert stat.std == pytest.approx(0.02)  # sample std, ddof=1
    assert mean_std([0.80, 0.84, 0.88]).std == pytest.approx(0.04)


def test_mean_std_edge_cases() -> None:
    single = mean_std([0.5])
    assert (single.n, single.mean, single.std) == (1, 0.5, 0.0)
    empty = mean_std([None, None])
    assert (empty.n, empty.mean, empty.std) == (0, None, None)
    assert mean_std([1.0, None, 3.0]).mean == 2.0
    assert math.isnan(mean_std([1.0, float("nan")]).mean or 0.0)  # divergence stays visible


def test_format_stat_shows_plus_minus_only_with_spread() -> None:
    assert format_stat("test/acc", mean_std([0.90, 0.92, 0.94])) == "0.9200 ± 0.0200"
    assert format_stat("test/acc", mean_std([0.9])) == "0.9000"
    assert format_stat("test/acc", mean_std([])) == "—"
    assert format_stat("params", mean_std([123456.0])) == "123,456"
    assert format_stat("vanishing_ratio", mean_std([1.3e-4])) == "1.30e-04"


def test_sweep_constants_and_labels() -> None:
    runs = [
        _run(["activation=relu", "seed=1", "data=shapes", "experiment=abl", "hydra.job.chdir=true"]),
        _run(["activation=gelu", "seed=2", "data=shapes", "experiment=abl", "hydra.job.chdir=true"]),
        _run([], known=False),  # unknown overrides must not veto the constants
    ]
    assert sweep_constants(runs) == ["data=shapes", "experiment=abl", "hydra.job.chdir=true"]
    labels = [g.label for g in summarize(runs).groups]
    assert labels == ["activation=relu", "activation=gelu", DEFAULT_LABEL]


def test_varying_hydra_overrides_do_not_split_groups() -> None:
    runs = [_run(["a=1", "hydra.run.dir=out/0"]), _run(["a=1", "hydra.run.dir=out/1"]), _run(["a=2"])]
    groups = summarize(runs).groups
    assert [(g.label, len(g.runs)) for g in groups] == [("a=1", 2), ("a=2", 1)]


def test_label_sorted_by_key_independent_of_override_order() -> None:
    runs = [
        _run(["model.residual=false", "activation=relu"]),
        _run(["activation=relu", "model.residual=false"]),
    ]
    runs.append(_run(["activation=gelu", "model.residual=true"]))
    groups = summarize(runs).groups
    assert groups[0].label == "activation=relu, model.residual=false" and len(groups[0].runs) == 2


def test_summarize_two_groups_three_seeds(sweep: Path) -> None:
    summary = summarize(collect_runs([sweep]))
    assert summary.constants == ["data=shapes", "model.depth=20"]
    assert summary.primary == "test/acc"
    assert summary.columns[0] == "test/acc"
    assert {"val/acc", "train/loss", "params", "wall_time_s", "vanishing_ratio"} <= set(summary.columns)
    relu, gelu = summary.groups  # sorted by test/acc, descending
    assert (relu.label, relu.n, relu.seeds) == ("activation=relu", 3, [1, 2, 3])
    assert gelu.label == "activation=gelu"
    assert relu.stats["test/acc"].mean == pytest.approx(0.92)
    assert relu.stats["test/acc"].std == pytest.approx(0.02)
    assert gelu.stats["test/acc"].mean == pytest.approx(0.84)
    assert gelu.stats["test/acc"].std == pytest.approx(0.04)
    assert relu.stats["wall_time_s"].mean == pytest.approx(12.0)
    assert relu.stats["wall_time_s"].std == pytest.approx(2.0)
    assert relu.stats["params"].std == 0.0
    assert gelu.stats["vanishing_ratio"].n == 0  # gelu runs recorded null


def test_groups_sorted_by_primary_metric_with_empty_groups_last(tmp_path: Path) -> None:
    write_run(tmp_path / "0", {"status": "failed", "error": "boom", "overrides": ["a=0"]}, ["a=0"])
    write_run(tmp_path / "1", {"status": "completed", "metrics": {"val/miou": 0.3}, "overrides": ["a=1"]})
    write_run(tmp_path / "2", {"status": "completed", "metrics": {"val/miou": 0.6}, "overrides": ["a=2"]})
    summary = summarize(collect_runs([tmp_path]))
    assert summary.primary == "val/miou"
    assert [g.label for g in summary.groups] == ["a=2", "a=1", "a=0"]
    assert summary.groups[-1].n == 0 and summary.groups[-1].n_failed == 1


def test_groups_merge_across_directories(tmp_path: Path) -> None:
    first = make_sweep(tmp_path / "a", seeds=(1, 2, 3))
    second = make_sweep(tmp_path / "b", seeds=(4, 5, 6))
    summary = summarize(collect_runs([first, second]))
    assert [(g.label, g.n) for g in summary.groups] == [("activation=relu", 6), ("activation=gelu", 6)]
    assert summary.groups[0].seeds == [1, 2, 3, 4, 5, 6]


def test_markdown_table_rows(sweep: Path) -> None:
    table = markdown_table(summarize(collect_runs([sweep]))).splitlines()
    assert table[0].startswith("| group | n | test/acc |")
    assert table[2].startswith("| activation=relu | 3 | 0.9200 ± 0.0200 |")
    assert table[3].startswith("| activation=gelu | 3 | 0.8400 ± 0.0400 |")
    assert "failed" not in table[0]  # failure columns only when something failed


def test_render_markdown_sections(sweep: Path) -> None:
    write_run(sweep / "6", {"status": "failed", "error": "ValueError: bad", "overrides": ["activation=tanh"]})
    write_run(sweep / "7", None, ["activation=tanh", "seed=2"])
    summary = summarize(collect_runs([sweep]))
    md = render_markdown(summary, [sweep])
    assert f"`{sweep}`" in md
    assert "6 completed, 1 failed, 1 missing/incomplete" in md
    failed = md.split("## Failed runs")[1].split("## Missing")[0]
    assert str(sweep / "6") in failed and "ValueError: bad" in failed
    missing = md.split("## Missing")[1]
    assert str(sweep / "7") in missing and "no metrics.json" in missing


def test_csv_round_trip(sweep: Path, tmp_path: Path) -> None:
    summary = summarize(collect_runs([sweep]))
    path = tmp_path / "report.csv"
    write_csv(summary, path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    header = list(rows[0])
    assert header[:4] == ["group", "n", "test/acc_mean", "test/acc_std"]
    assert [r["group"] for r in rows] == ["activation=relu", "activation=gelu"]
    assert int(rows[0]["n"]) == 3
    assert float(rows[0]["test/acc_mean"]) == pytest.approx(0.92)
    assert float(rows[0]["test/acc_std"]) == pytest.approx(0.02)
    assert float(rows[1]["test/acc_std"]) == pytest.approx(0.04)
    assert rows[1]["vanishing_ratio_mean"] == ""
    assert rows[0]["seeds"] == "1;2;3"


def test_curve_stats_align_on_epoch_and_skip_nulls() -> None:
    a = RunResult(Path("a"), "completed", history={"epoch": [0, 1, 2], "val/loss": [1.0, None, 0.2]})
    b = RunResult(Path("b"), "completed", history={"epoch": [0, 1], "val/loss": [3.0, 0.5]})
    curve = curve_stats([a, b], "val/loss")
    assert curve is not None
    assert curve.x == [0.0, 1.0, 2.0]
    assert curve.mean == pytest.approx([2.0, 0.5, 0.2])
    assert curve.std == pytest.approx([math.sqrt(2.0), 0.0, 0.0])
    assert curve_stats([a], "val/acc") is None


def test_gradient_flow_stats(tmp_path: Path) -> None:
    runs = collect_runs([write_run(tmp_path / "r", completed_metrics("relu", 1, 0.9, 1.0))])
    flow = gradient_flow_stats(runs)
    assert flow is not None
    assert flow.layers == ["conv1", "conv2", "fc"] and flow.depth == [0, 1, 2]
    assert flow.mean == pytest.approx([1e-4, 1e-2, 1.0])


def test_a_searchs_pruned_trials_are_listed_apart_and_its_callback_overrides_left_out_of_labels(tmp_path: Path) -> None:
    """A search dir: the trial callback's ``+callbacks.optuna_trial.*`` overrides say how a trial ran, not what it is;
    a pruned trial is neither a result nor a failure nor missing."""
    from experiments.reporting.render import pairing_notes, render_markdown

    def trial(number: int, lr: str, status: str, acc: float | None) -> None:
        overrides = [f"optimizer.lr={lr}", f"+callbacks.optuna_trial.trial={number}",
                     "+callbacks.optuna_trial.study_name=s"]
        record = completed_metrics("relu", 0, acc or 0.0, 1.0)
        record.update(overrides=overrides, status=status)
        if status == "pruned":
            record.update(error="pruned by the search at epoch 1 (val/acc=0.2)", metrics={"val/acc": 0.2})
        write_run(tmp_path / str(number), record, overrides)

    trial(0, "0.01", "completed", 0.9)
    trial(1, "0.1", "pruned", None)
    trial(2, "0.001", "completed", 0.8)
    summary = summarize(collect_runs([tmp_path]))
    assert sorted(g.label for g in summary.groups) == ["optimizer.lr=0.001", "optimizer.lr=0.01", "optimizer.lr=0.1"]
    assert len(summary.completed) == 2 and len(summary.pruned) == 1
    assert not summary.failed and not summary.incomplete
    assert any("optimizer.lr=0.1` was pruned by the search" in note for note in pairing_notes(summary))
    markdown = render_markdown(summary, [tmp_path])
    assert "2 completed, 1 pruned by the search, 0 failed, 0 missing/incomplete" in markdown
    assert "## Pruned by the search" in markdown
