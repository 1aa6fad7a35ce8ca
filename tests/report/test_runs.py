"""Discovery and loading of run directories (experiments.reporting.runs)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.reporting.runs import (
    COMPLETED,
    FAILED,
    INCOMPLETE,
    collect_runs,
    find_run_dirs,
    load_run,
    parse_override,
)

from .conftest import completed_metrics, write_run


def test_find_run_dirs_nested_in_natural_order(sweep: Path, tmp_path: Path) -> None:
    for job in (6, 7, 8, 9, 10, 11):
        write_run(sweep / str(job), completed_metrics("relu", job, 0.9, 1.0))
    found = find_run_dirs(tmp_path)
    assert [p.name for p in found] == [str(i) for i in range(12)]  # 10 after 9, not after 1
    assert all(p.parent == sweep for p in found)


def test_find_run_dirs_root_is_run_and_hidden_dirs_skipped(tmp_path: Path) -> None:
    run = write_run(tmp_path / "single", completed_metrics("relu", 1, 0.9, 1.0))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "metrics.json").write_text("{}")  # inside a run: not a separate run
    assert find_run_dirs(run) == [run]
    assert find_run_dirs(tmp_path) == [run]
    assert find_run_dirs(tmp_path / "single" / ".hydra") == []


def test_find_run_dirs_counts_hydra_only_job(tmp_path: Path) -> None:
    crashed = write_run(tmp_path / "0", None, ["seed=1"])
    assert find_run_dirs(tmp_path) == [crashed]


def test_load_completed_run(sweep: Path) -> None:
    run = load_run(sweep / "0")
    assert run.status == COMPLETED and run.completed and run.error is None
    assert run.task == "classification"
    assert run.seed == 1
    assert run.overrides == ["activation=relu", "seed=1", "data=shapes", "model.depth=20"]
    assert run.overrides_known
    assert run.metrics["test/acc"] == 0.90
    assert run.params == 1000.0 and run.wall_time_s == 10.0 and run.vanishing_ratio == 1e-3
    assert run.history["val/loss"] == [1.1, None, 0.2]
    assert run.gradient_flow is not None and run.gradient_flow.layers == ["conv1", "conv2", "fc"]


def test_load_failed_run_keeps_error_on_one_line(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path / "f",
        {
            "status": "failed",
            "error": "RuntimeError: CUDA out of memory\n  (tried 2 GiB)",
            "overrides": ["a=1"],
        },
    )
    run = load_run(run_dir)
    assert run.status == FAILED
    assert run.error == "RuntimeError: CUDA out of memory (tried 2 GiB)"


def test_failed_without_message(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "f", {"status": "failed"}))
    assert run.status == FAILED and run.error


def test_incomplete_runs(tmp_path: Path) -> None:
    missing = load_run(write_run(tmp_path / "m", None, ["activation=tanh", "seed=4"]))
    assert missing.status == INCOMPLETE and "no metrics.json" in (missing.error or "")
    # overrides and seed still recovered from .hydra so the report can say which job is missing
    assert missing.overrides == ["activation=tanh", "seed=4"] and missing.seed == 4

    running = load_run(write_run(tmp_path / "r", {"status": "running", "metrics": {"val/acc": 0.5}}))
    assert running.status == INCOMPLETE and "running" in (running.error or "")

    broken_dir = write_run(tmp_path / "b", None)
    (broken_dir / "metrics.json").write_text('{"status": "compl')
    broken = load_run(broken_dir)
    assert broken.status == INCOMPLETE and "unreadable" in (broken.error or "")

    not_a_dict = write_run(tmp_path / "l", None)
    (not_a_dict / "metrics.json").write_text("[1, 2]")
    assert load_run(not_a_dict).status == INCOMPLETE

    empty = load_run(write_run(tmp_path / "e", {}))
    assert empty.status == INCOMPLETE


def test_old_schema_is_tolerated(tmp_path: Path) -> None:
    """No status, no overrides in metrics.json, odd types: fall back to .hydra and skip junk."""
    run_dir = write_run(
        tmp_path / "old",
        {"metrics": {"test/acc": 0.7, "note": "text", "flag": True}, "params": "n/a", "history": [1]},
        ["model.depth=8", "+seed=7"],
    )
    run = load_run(run_dir)
    assert run.status == COMPLETED
    assert run.metrics == {"test/acc": 0.7}
    assert run.overrides == ["model.depth=8", "+seed=7"] and run.seed == 7
    assert run.params is None and run.history == {} and run.gradient_flow is None


def test_seed_from_config_yaml_when_nowhere_else(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r", {"status": "completed", "metrics": {"val/acc": 0.5}}, ["a=1"])
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 42\nmodel:\n  depth: 3\n")
    assert load_run(run_dir).seed == 42


def test_unknown_overrides(tmp_path: Path) -> None:
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"status": "completed", "metrics": {"val/acc": 1.0}}))
    run = load_run(run_dir)
    assert run.overrides == [] and not run.overrides_known


def test_collect_runs_dedups_overlapping_roots(sweep: Path, tmp_path: Path) -> None:
    runs = collect_runs([tmp_path, sweep, sweep / "0"])
    assert len(runs) == 6


def test_parse_override() -> None:
    assert parse_override("model.depth=20") == ("model.depth", "20")
    assert parse_override("++seed=3") == ("seed", "3")
    assert parse_override("~model.dropout") == ("model.dropout", "")
    assert parse_override("data.name=a=b") == ("data.name", "a=b")
