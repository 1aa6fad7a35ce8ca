"""Speed settings (conf/trainer): threads follow the packing of a sweep, bad values are one sentence before training,
and a packed sweep's jobs know they share the machine (every run's record of them: tests/test_compile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from experiments.config import conf_dir
from experiments.errors import ConfigError
from experiments.specs import SPEED_KEYS
from experiments.speed import settings as speed
from experiments.speed.settings import SpeedSettings, launcher_jobs, lightning_args
from experiments.validation import validate
from tests.conftest import TINY, run_cli
from tests.sweep_cli import NO_DIAGNOSTICS, explain, job_records, run_sweep

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def hydra_node(n_jobs: int, target: str = JOBLIB, mode: str = "RunMode.MULTIRUN"):
    return OmegaConf.create({"mode": mode, "launcher": {"_target_": target, "n_jobs": n_jobs}})


def test_a_job_knows_how_many_jobs_share_the_machine_from_its_launcher(monkeypatch) -> None:
    monkeypatch.setattr(speed, "usable_cores", lambda: 16)
    assert launcher_jobs(hydra_node(8)) == 8
    assert launcher_jobs(hydra_node(-1)) == 16 and launcher_jobs(hydra_node(-4)) == 13  # joblib's negative counts
    assert launcher_jobs(hydra_node(8, mode="RunMode.RUN")) == 1
    assert launcher_jobs(hydra_node(8, target="hydra._internal.core_plugins.basic_launcher.BasicLauncher")) == 1
    assert launcher_jobs(None) == 1  # no Hydra app: a single run

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):  # the documented launcher config
        packed = hydra_compose("train", overrides=["hydra/launcher=packed"], return_hydra_config=True).hydra.launcher
    assert packed._target_ == JOBLIB and packed.n_jobs == 4


def test_threads_are_the_given_number_else_the_environment_else_cores_over_packed_jobs(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(speed, "usable_cores", lambda: 16)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = make_cfg()
    assert SpeedSettings.from_config(cfg).threads == 16  # a single run: every usable core
    packed = SpeedSettings.from_config(cfg, hydra_node(8))
    assert (packed.threads, packed.packed_jobs) == (2, 8)
    assert SpeedSettings.from_config(cfg, hydra_node(32)).threads == 1  # never below one
    assert SpeedSettings.from_config(make_cfg(["trainer.packed_jobs=4"])).threads == 4  # several sweeps at once
    assert SpeedSettings.from_config(make_cfg(["trainer.threads=3"]), hydra_node(8)).threads == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's (or joblib's) explicit choice
    assert SpeedSettings.from_config(cfg, hydra_node(8)).threads == 5


def test_defaults_and_the_gpu_trainer(make_cfg) -> None:
    cpu = SpeedSettings.from_config(make_cfg())
    assert (cpu.compile, cpu.channels_last, cpu.device_data_gb, cpu.precision) == ("off", False, 4.0, "32-true")
    gpu = SpeedSettings.from_config(make_cfg(["trainer=gpu"], tiny=False))
    assert (gpu.precision, gpu.channels_last, gpu.cudnn_benchmark) == ("bf16-mixed", True, True)
    assert SpeedSettings.from_config(make_cfg(["trainer.compile=reduce-overhead"])).compile == "reduce-overhead"
    old_run = make_cfg()  # a run's config.yaml from before these settings: the defaults
    for key in SPEED_KEYS:
        del old_run.trainer[key]
    assert SpeedSettings.from_config(old_run).compile == "off"


def test_the_trainer_is_built_without_the_speed_keys(make_cfg) -> None:
    args = lightning_args(make_cfg().trainer)
    assert not set(SPEED_KEYS) & set(args) and args.precision == "32-true"
    assert args.default_root_dir.endswith("run")  # ${run_dir} resolved while the whole config was at hand


@pytest.mark.parametrize("override, key", [
    ("trainer.compile=fast", "trainer.compile"),
    ("trainer.threads=0", "trainer.threads"),
    ("trainer.packed_jobs=many", "trainer.packed_jobs"),
    ("trainer.channels_last=maybe", "trainer.channels_last"),
    ("trainer.device_data_gb=-1", "trainer.device_data_gb"),
])
def test_bad_speed_settings_are_one_sentence_before_training(make_cfg, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(make_cfg([override]))
    assert info.value.key == key and str(info.value).count(".") >= 1 and "\n" not in str(info.value)
    validate(make_cfg(["trainer.compile=off", "trainer.threads=2", "trainer.device_data_gb=0"]))


def test_the_cli_refuses_an_unknown_compile_mode_with_exit_status_2(tmp_path: Path) -> None:
    result = run_cli("experiments.train", "trainer.compile=fast", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trainer.compile=fast" in result.stderr and "reduce-overhead" in result.stderr


@pytest.mark.slow  # two worker processes start torch and Lightning: the fast suite checks packing in
# tests/test_launchers.py's joblib sweep and launcher_jobs above
def test_a_packed_sweep_runs_its_jobs_at_once_each_knowing_it_shares_the_machine(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_sweep(sweep, NO_DIAGNOSTICS, "hydra/launcher=packed", "hydra.launcher.n_jobs=2", "seed=0,1",
                       base=[*TINY, "data.train_size=64", "model.width=4"])
    assert result.returncode == 0, explain(result)
    assert "Joblib.Parallel" in result.stdout + result.stderr
    records = job_records(sweep)
    assert sorted(records) == [0, 1]
    for record in records.values():
        assert record["status"] == "completed", record["error"]
        assert record["speed"]["packed_jobs"] == 2 and record["speed"]["threads"] >= 1
