"""The parallel and cluster launchers, and the optuna sweeper, run small sweeps end to end (``sweeps`` extra).

joblib runs the jobs in local worker processes at the same time; submitit_local goes through submitit's
job submission (pickled job, separate process, result file), which is what submitit_slurm does on a
cluster, so a passing test here means the Slurm path differs only in where the process runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.sweep_cli import NO_DIAGNOSTICS, explain, job_records, run_sweep


def needs_plugin(module: str, package: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"{package} not installed: pip install -e '.[sweeps]'")


def assert_two_jobs_completed(sweep: Path) -> None:
    records = job_records(sweep)
    assert sorted(records) == [0, 1]
    assert {r["choices"]["activation"] for r in records.values()} == {"relu", "tanh"}
    for record in records.values():
        assert record["status"] == "completed", record["error"]
        assert record["metrics"]["test/acc"] is not None


@pytest.mark.slow  # two processes each importing torch and Lightning; the packed launcher's tests cover parallel jobs
@needs_plugin("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher")
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_sweep(sweep, NO_DIAGNOSTICS, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       "activation=relu,tanh")
    assert result.returncode == 0, explain(result)
    assert "Joblib.Parallel" in result.stdout + result.stderr  # the plugin, not the basic launcher, ran them
    assert "2 of 2 jobs completed" in result.stdout
    assert_two_jobs_completed(sweep)
    # each job read n_jobs from its own Hydra config: its threads and GPU share are for 2 jobs at once
    assert {r["speed"]["packed_jobs"] for r in job_records(sweep).values()} == {2}


@pytest.mark.slow  # a second launcher plugin; the joblib test above covers jobs in other processes by default
@needs_plugin("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher")
def test_submitit_local_launcher_runs_submitted_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_sweep(sweep, NO_DIAGNOSTICS, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                       "activation=relu,tanh")
    assert result.returncode == 0, explain(result)
    assert "2 of 2 jobs completed" in result.stdout
    assert_two_jobs_completed(sweep)
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # submitit's own job records

