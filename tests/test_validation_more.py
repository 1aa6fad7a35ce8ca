"""More bad inputs, one sentence each: schedules, data sizes vs batch size, trainer/DDP sanity, resume keys.

Adds to the twelve of test_config.py; every case names the key, the bad value and a fix, before anything is
built. Composing only (no training), so the whole file runs in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import compose
from experiments.errors import ConfigError
from experiments.validation import validate
from tests.conftest import TINY

#: (overrides, expected start "key=value", phrase in the problem); {file} is an existing file, {dir} an empty dir
BAD_INPUTS = [
    (["scheduler=step", "scheduler.milestones=[0.5,1.5]"], "scheduler.milestones=[0.5,1.5]", "between 0 and 1"),
    (["scheduler=step", "scheduler.milestones=[0.75,0.5]"], "scheduler.milestones=[0.75,0.5]", "increasing order"),
    (["scheduler=step", "scheduler.gamma=2"], "scheduler.gamma=2", "(0, 1]"),
    (["scheduler=cosine", "scheduler.eta_min=0.1"], "scheduler.eta_min=0.1", "cosine floor"),
    (["scheduler=onecycle", "scheduler.div_factor=0.5"], "scheduler.div_factor=0.5", "above the peak"),
    (["data.batch_size=512"], "data.batch_size=512", "exceeds data.train_size=256"),
    (["data.num_workers=-1"], "data.num_workers=-1", "integer >= 0"),
    (["trainer.accelerator=fpga"], "trainer.accelerator=fpga", "known accelerators"),
    (["trainer.devices=0"], "trainer.devices=0", "positive count"),
    (["trainer.precision=8-bit"], "trainer.precision=8-bit", "known precisions"),
    (["trainer=cpu", "trainer.precision=16-mixed"], "trainer.precision=16-mixed", "GPUs only"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1", "cannot be negative"),
    (["trainer=ddp_cpu", "trainer.devices=1"], "trainer.devices=1", "one process per device"),
    (["trainer=ddp_cpu", "trainer.strategy.process_group_backend=nccl"],
     "trainer.strategy.process_group_backend=nccl", "NCCL runs on GPUs only"),
    (["trainer=ddp_cpu", "data.batch_size=200"], "data.batch_size=200", "each of the 2 DDP processes"),
    (["trainer=ddp_cpu", "data.val_size=1"], "data.val_size=1", "each of the 2 DDP processes"),
    (["resume=maybe"], "resume=maybe", "true or false"),
    (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path=/nonexistent/last.ckpt", "no such file"),
    (["resume=true", "ckpt_path={file}"], "ckpt_path={file}", "already continues"),
    (["resume=true"], "resume=true", "holds no earlier run"),
]


def _cfg(overrides: list[str], tmp_path: Path, mode: str | None = None):
    existing = tmp_path / "some.ckpt"
    existing.write_bytes(b"x")
    (tmp_path / "fresh").mkdir(exist_ok=True)
    cfg = compose([*TINY, *(o.format(file=existing) for o in overrides)])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(tmp_path / "fresh" / "0")
    if mode is not None:  # what Hydra's record says under the CLI
        cfg.hydra = {"mode": mode}
    return cfg


def _check_sentence(err: pytest.ExceptionInfo, key_value: str, phrase: str) -> None:
    message = str(err.value)
    assert message.startswith(key_value + " is invalid: "), message
    assert phrase in message, message
    assert "\n" not in message and message.endswith(".")
    assert any(word in message for word in ("use ", "set ", "drop ", "point ", "run ")), message  # names a fix


@pytest.mark.parametrize(("overrides", "key_value", "phrase"), BAD_INPUTS, ids=lambda v: str(v)[:40])
def test_bad_value_is_one_sentence(tmp_path: Path, overrides: list[str], key_value: str, phrase: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_cfg(overrides, tmp_path))
    _check_sentence(err, key_value.format(file=tmp_path / "some.ckpt"), phrase)


def test_resume_in_a_sweep_needs_an_earlier_sweep(tmp_path: Path) -> None:
    cfg = _cfg(["resume=true"], tmp_path, mode="MULTIRUN")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    _check_sentence(err, "resume=true", "holds no earlier job")
    (tmp_path / "fresh" / "1").mkdir()
    (tmp_path / "fresh" / "1" / "metrics.json").write_text("{}")
    validate(cfg)  # an earlier job exists: this job (never run) may start now


def test_ddp_inside_a_sweep_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_cfg(["trainer=ddp_cpu"], tmp_path, mode="MULTIRUN"))
    _check_sentence(err, "trainer.strategy=ddpstrategy", "re-launch the whole sweep")


def test_sound_run_level_settings_pass(tmp_path: Path) -> None:
    for overrides in (["trainer=ddp_cpu"], ["trainer=ddp"], ["scheduler=step"], ["scheduler=cosine"],
                      ["trainer.devices=auto"], ["trainer.precision=bf16-mixed"], ["ckpt_path={file}"]):
        validate(_cfg(overrides, tmp_path))
    total = len(BAD_INPUTS) + 2  # plus the two sweep cases above; test_config.py has twelve more
    assert total >= 20
