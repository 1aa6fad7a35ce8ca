"""More bad inputs, one sentence each: schedules, data sizes vs batch size, trainer/DDP sanity, resume keys.

Adds to the twelve of test_config.py; every case names the key, the bad value and a fix, before anything is
built. Composing only (no training), so the whole file runs in seconds.
"""

from __future__ import annotations

import subprocess
import sys
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
    (["loss=dice"], "loss=dice", "batch-level F1"),  # a loss of pixel regions on one label per image
    (["model=fcn", "loss=pixel_mse"], "loss=pixel_mse", "a reconstruction loss"),
    (["model=autoencoder", "loss=cross_entropy"], "loss=cross_entropy", "per-pixel reconstruction loss"),
]


def _cfg(overrides: list[str], tmp_path: Path, mode: str | None = None):
    existing = tmp_path / "some.ckpt"
    existing.write_bytes(b"x")
    (tmp_path / "fresh").mkdir(exist_ok=True)
    cfg = compose([*TINY, *(o.format(file=existing) for o in overrides)])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(tmp_path / "fresh" / "0")
    if mode is not None:  # what Hydra's record says under the CLI
        cfg.hydra.mode = mode
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


@pytest.mark.parametrize(("overrides", "typed"), [
    (["trainer=ddp_cpu"], "trainer=ddp_cpu"),  # its strategy node resolves to DDPStrategy: the option is named
    (["trainer=ddp_cpu", "trainer.strategy=ddp"], "trainer.strategy=ddp"),  # the key typed, as typed
])
def test_ddp_inside_a_sweep_is_refused_naming_what_was_typed(tmp_path: Path, overrides: list[str], typed: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_cfg(overrides, tmp_path, mode="MULTIRUN"))
    _check_sentence(err, typed, "re-launch the whole sweep")
    assert "ddpstrategy" not in str(err.value)


#: (overrides, the sentence's start, its fix): a GPU trainer where no GPU is
NO_GPU = [
    (["trainer=gpu"], "trainer=gpu is invalid: it trains on a GPU and this machine has none that CUDA can see; ",
     "use trainer=cpu (or trainer.accelerator=auto, which takes a GPU where there is one)."),
    (["trainer.accelerator=cuda"], "trainer.accelerator=cuda is invalid: it trains on a GPU ", "use trainer=cpu"),
    (["trainer=ddp"], "trainer=ddp is invalid: it trains on every GPU and this machine has none",
     "use trainer=ddp_cpu for DDP on the CPU, or trainer=cpu."),
    (["experiment=plain_vs_residual", "scale=paper"],  # the trainer a scale picks: said who picked it
     "trainer=gpu is invalid: it trains on a GPU and this machine has none that CUDA can see (scale=paper picks it); ",
     "use trainer=cpu"),
]


@pytest.mark.parametrize(("overrides", "start", "fix"), NO_GPU, ids=lambda v: str(v)[:30])
def test_a_gpu_trainer_without_a_gpu_is_one_sentence(monkeypatch, overrides: list[str], start: str, fix: str) -> None:
    from experiments.validation import trainer

    cfg = compose(overrides)
    monkeypatch.setattr(trainer, "gpu_available", lambda accelerator="gpu": False)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert message.startswith(start) and fix in message and "\n" not in message
    validate(cfg, machine=False)  # a command that trains nothing (inspect) does not ask about the machine
    monkeypatch.setattr(trainer, "gpu_available", lambda accelerator="gpu": True)
    validate(cfg)  # a machine with a GPU: the same config is sound


def test_gpu_presence_is_read_without_torch(monkeypatch) -> None:
    """What decides, torch not imported: its build (CPU-only, ROCm), CUDA_VISIBLE_DEVICES, the driver's device count;
    an unknown answer never refuses."""
    import sys

    import torch

    from experiments.validation import trainer

    assert trainer._torch_build() == {"cuda": torch.version.cuda, "hip": torch.version.hip}  # version.py read as text
    assert trainer.gpu_available() == torch.cuda.is_available()  # torch loaded: torch's own answer
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(trainer, "_nvml_device_count", lambda: 1)
    for build, visible, expected in [({"cuda": None, "hip": None}, None, False),  # a CPU-only torch
                                     ({"cuda": None, "hip": "6.2"}, None, True),  # ROCm: only torch can tell
                                     ({"cuda": "12.4", "hip": None}, "", False),  # every device hidden
                                     ({"cuda": "12.4", "hip": None}, "0", True)]:
        monkeypatch.setattr(trainer, "_torch_build", lambda build=build: build)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert trainer.gpu_available("cuda") is expected, (build, visible)
    for count, expected in [(0, False), (2, True), (None, True)]:  # None: NVML missing but a driver is there
        monkeypatch.setattr(trainer, "_nvml_device_count", lambda count=count: count)
        assert trainer.gpu_available("cuda") is expected


def test_validating_a_gpu_trainer_imports_neither_torch_nor_lightning() -> None:
    """The check runs where ``train`` validates, before torch is imported: it must not import it itself."""
    code = ("import sys\nfrom experiments.config import compose\nfrom experiments.validation import validate\n"
            "from experiments.errors import ConfigError\ntry:\n    validate(compose(['trainer=gpu']))\n"
            "except ConfigError as err:\n    print(err)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_zoo_architecture_is_refused_in_validation_naming_close_matches(monkeypatch) -> None:
    from experiments.validation import model

    with pytest.raises(ConfigError) as err:
        validate(compose(["model=torchvision", "model.arch=resnet19"]))
    message = str(err.value)
    assert message.startswith("model.arch=resnet19 is invalid: torchvision has no classifier of that name; use "
                              "model.arch=resnet18, ") and "lists all)." in message and "\n" not in message
    built: list[str] = []
    real = model._build_zoo
    monkeypatch.setattr(model, "_build_zoo", lambda cfg, device: (built.append(device), real(cfg, device)))
    validate(compose(["model=torchvision", "model.arch=resnet18"]))
    assert built == ["meta"]  # a sound architecture: shapes only, nothing initialised
    with pytest.raises(ConfigError) as err:  # one ReLU module applied to 64 and 256 channels: no per-channel PReLU
        validate(compose(["model=torchvision", "model.arch=resnet50", "activation=prelu"]))
    assert str(err.value).startswith("activation=prelu is invalid: torchvision resnet50's net.layer1.0.relu is one "
                                     "module applied to 64 and 256 channels")
    assert built == ["meta", "meta", "cpu"]  # a refusal is the CPU build's own sentence


def test_refusals_come_before_the_config_is_printed(make_cfg, capsys, monkeypatch) -> None:
    from experiments.train import train
    from experiments.validation import trainer

    monkeypatch.setattr(trainer, "gpu_available", lambda accelerator="gpu": False)
    for overrides in (["trainer.accelerator=gpu"], ["model=torchvision", "model.arch=resnet19"], ["loss=dice"]):
        with pytest.raises(ConfigError):
            train(make_cfg(overrides))
        printed = capsys.readouterr()
        assert "config (compact" not in printed.out + printed.err and "model:" not in printed.out


def test_sound_run_level_settings_pass(tmp_path: Path) -> None:
    for overrides in (["trainer=ddp_cpu"], ["trainer=ddp"], ["scheduler=step"], ["scheduler=cosine"],
                      ["trainer.devices=auto"], ["trainer.precision=bf16-mixed"], ["ckpt_path={file}"],
                      ["model=fcn", "loss=dice"], ["model=fcn", "loss=mse"], ["loss=focal"]):
        validate(_cfg(overrides, tmp_path))
    total = len(BAD_INPUTS) + 2  # plus the two sweep cases above; test_config.py has twelve more
    assert total >= 20


def test_a_missing_ckpt_path_names_the_checkpoints_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"PK")
    with pytest.raises(ConfigError) as err:
        validate(_cfg([f"ckpt_path={folder / 'best.ckpt'}"], tmp_path))
    _check_sentence(err, f"ckpt_path={folder / 'best.ckpt'}", "no such file")
    assert str(err.value).endswith(f"; point ckpt_path at {folder / 'last.ckpt'}.")


@pytest.mark.parametrize(("typed", "strategy", "named"), [
    (["trainer=ddp_cpu"], "ddpstrategy", "trainer=ddp_cpu is invalid"),
    (["trainer=cpu,ddp_cpu", "seed=0,1"], "auto", "trainer=cpu,ddp_cpu is invalid"),  # one swept value is enough
    (["scale=gpu"], "ddp", "trainer.strategy=ddp is invalid"),  # picked by another choice: the composed strategy
    (["trainer=cpu,gpu"], "auto", None),
])
def test_a_ddp_sweep_is_refused_before_any_job_starts(typed: list[str], strategy: str, named: str | None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The sweep's first Hydra callback refuses DDP with one sentence and exit 2, so no job is launched."""
    from omegaconf import OmegaConf

    from experiments.reporting.sweep_status import SweepStatus

    config = OmegaConf.create({"hydra": {"overrides": {"task": typed}, "sweep": {"dir": "unused"}},
                               "trainer": {"strategy": strategy}})
    if named is None:
        SweepStatus().on_multirun_start(config)
        return
    with pytest.raises(SystemExit) as stop:
        SweepStatus().on_multirun_start(config)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named}: ") and "re-launch the whole sweep" in err and err.count("\n") == 1
