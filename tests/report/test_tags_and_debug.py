"""``report --tag`` keeps the runs carrying every given tag; debug runs are left out unless ``--include-debug``."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from experiments import report
from tests.report.conftest import completed_metrics, write_run


def _sweep(root: Path) -> Path:
    """relu runs tagged [study, lr] at 0.90/0.92, a gelu run tagged [study] at 0.80, an untagged relu run at 0.10 and
    a debug relu run (debug=fdr) at 0.0."""
    runs = [("relu", 1, 0.90, ["study", "lr"], None), ("relu", 2, 0.92, ["study", "lr"], None),
            ("gelu", 1, 0.80, ["study"], None), ("relu", 3, 0.10, [], None), ("relu", 4, 0.0, ["study", "lr"], "fdr")]
    for job, (activation, seed, acc, tags, debug) in enumerate(runs):
        metrics = completed_metrics(activation, seed, acc, 10.0)
        metrics.update(tags=tags, debug=debug)
        write_run(root / str(job), metrics, metrics["overrides"])
    return root


def _rows(out: Path) -> dict[str, list[str]]:
    with (out / "report.csv").open(newline="") as handle:
        return {row[0]: row for row in list(csv.reader(handle))[1:]}


def test_tags_filter_the_runs_and_debug_runs_are_left_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = _sweep(tmp_path / "sweep")
    assert report.main([str(sweep), "--tag", "study", "--tag", "lr", "--no-plots", "--out", str(tmp_path / "a")]) == 0
    (row,) = _rows(tmp_path / "a").values()  # one arm: the relu runs tagged study *and* lr, the debug one left out
    assert row[1] == "2" and float(row[2]) == pytest.approx(0.91)
    assert "left out 1 debug run(s)" in capsys.readouterr().out

    assert report.main([str(sweep), "--tag", "study", "--no-plots", "--out", str(tmp_path / "b")]) == 0
    assert sorted(_rows(tmp_path / "b")) == ["activation=gelu", "activation=relu"]

    assert report.main([str(sweep), "--tag", "lr", "--include-debug", "--no-plots", "--out", str(tmp_path / "c")]) == 0
    (row,) = _rows(tmp_path / "c").values()
    assert row[1] == "3" and float(row[2]) == pytest.approx(1.82 / 3)  # 0.90, 0.92 and the debug run's 0.0


def test_no_run_with_the_tag_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = _sweep(tmp_path / "sweep")
    assert report.main([str(sweep), "--tag", "nosuch", "--no-plots"]) == report.EXIT_NO_RUNS
    assert "error: no runs tagged nosuch under" in capsys.readouterr().err
