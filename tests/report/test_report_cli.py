"""End to end: ``python -m experiments.report`` in a subprocess, exactly as a user runs it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.report import main

from .conftest import make_sweep, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SRC = Path(__file__).resolve().parents[2] / "src"


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-m", "experiments.report", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert len(data) > 100 and data.startswith(PNG_SIGNATURE)


def test_full_sweep_writes_table_csv_and_plots(sweep: Path) -> None:
    result = run_cli(sweep)
    assert result.returncode == 0, result.stderr
    assert "| activation=relu | 3 | 0.9200 ± 0.0200 |" in result.stdout
    assert "| activation=gelu | 3 | 0.8400 ± 0.0400 |" in result.stdout
    assert str(sweep / "report.md") in result.stdout

    md = (sweep / "report.md").read_text()
    assert "activation=relu" in md and "activation=gelu" in md
    assert "`data=shapes`" in md and "`model.depth=20`" in md  # constants listed once in the header
    assert "6 completed, 0 failed, 0 missing/incomplete" in md

    with (sweep / "report.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, relu, gelu = rows
    assert header[:4] == ["group", "n", "test/acc_mean", "test/acc_std"]
    assert relu[:2] == ["activation=relu", "3"] and gelu[:2] == ["activation=gelu", "3"]
    assert float(relu[2]) == pytest.approx(0.92) and float(relu[3]) == pytest.approx(0.02)
    assert float(gelu[2]) == pytest.approx(0.84) and float(gelu[3]) == pytest.approx(0.04)

    for name in (
        "curves_val_acc",
        "curves_val_loss",
        "curves_train_loss",
        "bars_test_acc",
        "bars_val_acc",
        "gradient_flow",
    ):
        assert_png(sweep / f"{name}.png")
        assert f"({name}.png)" in md


def test_failed_and_missing_runs_are_reported_with_exit_0(sweep: Path, tmp_path: Path) -> None:
    write_run(
        sweep / "6",
        {
            "status": "failed",
            "error": "RuntimeError: loss is NaN",
            "overrides": ["activation=tanh", "seed=1"],
        },
        ["activation=tanh", "seed=1"],
    )
    write_run(sweep / "7", None, ["activation=tanh", "seed=2"])
    write_run(sweep / "8", {"status": "running"}, ["activation=tanh", "seed=3"])
    out = tmp_path / "report_out"
    result = run_cli(sweep, "--out", out, "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "6 completed, 1 failed, 2 missing/incomplete" in result.stdout
    assert "| activation=tanh | 0 |" in result.stdout  # the all-failed configuration is still a row
    md = (out / "report.md").read_text()
    failed = md.split("## Failed runs")[1].split("## Missing")[0]
    assert str(sweep / "6") in failed and "RuntimeError: loss is NaN" in failed
    missing = md.split("## Missing")[1]
    assert str(sweep / "7") in missing and str(sweep / "8") in missing
    assert not list(out.glob("*.png"))
    assert not (sweep / "report.md").exists()


def test_empty_dir_exits_1_with_one_line_message(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(tmp_path / "empty")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"no runs found under {tmp_path / 'empty'}" in result.stderr
    assert "metrics.json" in result.stderr and "python -m experiments.train" in result.stderr


def test_nonexistent_dir_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nope")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "nope" in result.stderr


def test_help_is_fast_and_imports_no_torch() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "--out" in result.stdout
    code = (
        "import sys, experiments.report, experiments.reporting, experiments.reporting.inference;"
        "bad = [m for m in ('torch', 'lightning', 'matplotlib', 'scipy', 'statsmodels', 'numpy') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


# In-process checks of the remaining branches (no subprocess start-up cost).


def test_all_runs_failed_exits_1_but_writes_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "0", {"status": "failed", "error": "boom"}, ["a=1"])
    assert main([str(tmp_path), "--no-plots"]) == 1
    assert "no completed runs" in capsys.readouterr().err
    assert "boom" in (tmp_path / "report.md").read_text()


def test_single_run_dir_and_multiple_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = make_sweep(tmp_path / "a", seeds=(1, 2, 3))
    second = make_sweep(tmp_path / "b", seeds=(4, 5, 6))
    assert main([str(first / "0"), "--no-plots"]) == 0
    assert "| (default) | 1 | 0.9000 |" in capsys.readouterr().out
    out = tmp_path / "merged"
    assert main([str(first), str(second), "--out", str(out), "--no-plots"]) == 0
    assert "| activation=relu | 6 |" in capsys.readouterr().out
    assert f"`{first}`, `{second}`" in (out / "report.md").read_text()


def test_plan_prints_the_seed_plan_and_writes_nothing(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--plan`` answers how many seeds each comparison needs, from the same pairing as the table, and leaves
    the sweep dir as it was (no report.md, no plots)."""
    before = sorted(p.name for p in sweep.iterdir())
    assert main([str(sweep), "--plan", "--baseline", "activation=relu", "--min-effect", "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Seed plan for test/acc")
    # gelu - relu paired by seed: -0.10, -0.08, -0.06 -> mean -0.08
    row = next(line for line in out.splitlines() if line.startswith("| activation=gelu"))
    assert "-0.0800" in row and "| 3 |" in row
    assert sorted(p.name for p in sweep.iterdir()) == before
