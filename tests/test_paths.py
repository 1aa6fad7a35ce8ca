"""The ``paths`` group: data and outputs default to the checkout, not the directory a command starts in, and follow
``EXPERIMENTS_DATA_DIR`` / ``EXPERIMENTS_OUTPUT_DIR`` or ``paths.*=`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.config import compose
from tests.conftest import REPO, run_cli


def test_defaults_are_the_checkout_wherever_the_command_starts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EXPERIMENTS_DATA_DIR", raising=False)
    monkeypatch.delenv("EXPERIMENTS_OUTPUT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = compose(["data=mnist"])
    assert cfg.paths.output_dir == str(REPO / "outputs") and cfg.data.root == str(REPO / "data")
    assert compose(["data=image_folder"]).data.root == str(REPO / "data" / "images")


def test_environment_and_command_line_set_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EXPERIMENTS_DATA_DIR", str(tmp_path / "datasets"))
    monkeypatch.setenv("EXPERIMENTS_OUTPUT_DIR", str(tmp_path / "results"))
    cfg = compose(["data=cifar10"])
    assert cfg.data.root == str(tmp_path / "datasets") and cfg.paths.output_dir == str(tmp_path / "results")
    cli = compose(["data=cifar10", "paths.data_dir=/mnt/data"])  # the command line wins over the environment
    assert cli.data.root == "/mnt/data"


def test_a_run_lands_under_the_output_dir_of_the_environment(tmp_path: Path, monkeypatch) -> None:
    """Through the CLI, started elsewhere: the run dir is created under $EXPERIMENTS_OUTPUT_DIR/runs/, and the data
    root follows $EXPERIMENTS_DATA_DIR (a missing MNIST copy there is the error, before anything trains)."""
    monkeypatch.setenv("EXPERIMENTS_OUTPUT_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("EXPERIMENTS_DATA_DIR", str(tmp_path / "datasets"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("experiments.train", "data=mnist", cwd=elsewhere, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"data.root={tmp_path / 'datasets'} is invalid" in result.stderr
    (record,) = (tmp_path / "results" / "runs").glob("*/*/metrics.json")
    assert json.loads(record.read_text())["status"] == "failed"
    assert not any(elsewhere.iterdir())  # nothing written where the command started
