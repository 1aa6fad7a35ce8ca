"""Hydra multiruns through the real CLI, then the report over them.

Each test launches one ``python -m experiments.train -m`` subprocess with a tiny budget (seconds per job),
because what is under test is the process-level behaviour: exit status, per-job run dirs, the sweep callback's
one-line failure summary, and jobs of the basic launcher not leaking state into each other.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from experiments import report
from experiments.config import compose
from experiments.train import train
from tests.sweep_cli import explain, job_records, run_sweep


@pytest.fixture(scope="session")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 activations x 2 seeds = 4 jobs in one process (the basic launcher runs them one after another)."""
    sweep = tmp_path_factory.mktemp("grid") / "sweep"
    result = run_sweep(sweep, "activation=relu,tanh", "seed=0,1")
    assert result.returncode == 0, explain(result)
    assert "4 of 4 jobs completed" in result.stdout
    return sweep


def test_grid_sweep_writes_one_completed_run_dir_per_job(grid_sweep: Path) -> None:
    records = job_records(grid_sweep)
    assert sorted(records) == [0, 1, 2, 3]
    assert [(r["choices"]["activation"], r["seed"]) for _, r in sorted(records.items())] == [
        ("relu", 0), ("relu", 1), ("tanh", 0), ("tanh", 1),
    ]
    for num, record in records.items():
        assert record["status"] == "completed" and record["error"] is None
        assert record["metrics"]["test/acc"] is not None
        assert len(record["history"]["epoch"]) == 2
        assert list((grid_sweep / str(num) / "tensorboard").rglob("events.out.tfevents.*"))
    assert (grid_sweep / "multirun.yaml").is_file()


def test_jobs_of_one_process_do_not_leak_state(grid_sweep: Path, tmp_path: Path) -> None:
    """Job 2 ran after two other jobs in the same process; a fresh run of its config gives the same numbers."""
    job = job_records(grid_sweep)[2]
    overrides = [o for o in job["overrides"] if not o.startswith("hydra")]
    cfg = compose(overrides)
    cfg.run_dir = str(tmp_path / "fresh")
    fresh = train(cfg)
    for key in ("train/loss", "val/loss", "test/acc", "test/loss"):
        assert fresh["metrics"][key] == pytest.approx(job["metrics"][key], rel=1e-5, abs=1e-6), key


def test_report_over_the_sweep_groups_seeds_into_mean_and_std(grid_sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert report.main([str(grid_sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "activation=relu" in printed and "activation=tanh" in printed
    assert "4 completed, 0 failed" in printed

    with (out / "report.csv").open() as handle:
        rows = {row["group"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"activation=relu", "activation=tanh"}  # seed and the shared overrides are not groups
    records = job_records(grid_sweep)
    for activation, jobs in (("relu", (0, 1)), ("tanh", (2, 3))):
        row = rows[f"activation={activation}"]
        assert row["n"] == "2" and row["seeds"] == "0;1" and row["n_failed"] == "0"
        for metric in ("test/acc", "val/loss", "train/loss"):
            values = [records[j]["metrics"][metric] for j in jobs]
            assert float(row[f"{metric}_mean"]) == pytest.approx(statistics.mean(values))
            assert float(row[f"{metric}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert float(row["params_mean"]) == records[jobs[0]]["params"]

    markdown = (out / "report.md").read_text()
    assert "| activation=relu" in markdown and "| activation=tanh" in markdown
    plots = sorted(out.glob("*.png"))
    names = {p.name for p in plots}
    assert any(n.startswith("curves_") for n in names) and any(n.startswith("bars_") for n in names), names
    assert "gradient_flow.png" in names
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 1000


def test_failing_jobs_do_not_stop_the_sweep_and_are_named(tmp_path: Path) -> None:
    """Job 1 is a config mistake, job 2 diverges mid-training; job 0 still completes and the sweep exits 1."""
    sweep = tmp_path / "sweep"
    result = run_sweep(sweep, "optimizer.lr=0.004,-1,1e30")
    assert result.returncode == 1, explain(result)
    assert "Traceback" not in result.stdout + result.stderr
    assert "1 of 3 jobs completed" in result.stdout
    failed_lines = [line for line in result.stderr.splitlines() if line.startswith("failed job")]
    assert len(failed_lines) == 2
    assert failed_lines[0].startswith("failed job 1 [optimizer.lr=-1]: optimizer.lr=-1 is invalid")
    assert failed_lines[1].startswith("failed job 2 [optimizer.lr=1e+30]: TrainingDiverged")
    assert "error: 2 of 3 jobs failed (jobs 1, 2)" in result.stderr

    records = job_records(sweep)
    assert records[0]["status"] == "completed"
    assert records[1]["status"] == "failed" and "optimizer.lr=-1 is invalid" in records[1]["error"]
    assert records[2]["status"] == "failed" and "diverged" in records[2]["error"]

    assert report.main([str(sweep), "--no-plots"]) == 0  # one completed run is enough for a report
    markdown = (sweep / "report.md").read_text()
    failures = markdown.split("## Failed runs", 1)[1]
    assert "optimizer.lr=-1 is invalid" in failures and "diverged" in failures
