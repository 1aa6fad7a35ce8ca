"""The scale switch: scale=cpu is today's budget, scale=gpu the full size, scale=paper each paper's setup (He et al.'s
CIFAR ResNets checked key by key); the data stays the user's choice at every scale."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from experiments.config import compose, conf_dir
from experiments.tasks.schedules import step
from experiments.validation import validate

STUDIES = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
SCALES = ("cpu", "gpu", "paper")


def sweep(overrides: list[str]) -> dict[str, str]:
    """The sweeper's grid as Hydra composes it (``compose`` keeps only the choices of the hydra node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    return {str(k): str(v) for k, v in cfg.hydra.sweeper.params.items()}


def test_every_study_has_a_budget_at_every_scale() -> None:
    for study in STUDIES:
        for scale in SCALES:
            text = (conf_dir() / "budget" / study / f"{scale}.yaml").read_text()
            assert text.startswith("# @package _global_\n# scale="), (study, scale)
            if scale == "paper":  # each paper setup cites its source (or says there is none)
                assert any(word in text for word in (" 19", " 20", "no paper")), study


def test_scale_cpu_is_the_default_and_todays_budget() -> None:
    cfg = compose(["experiment=sigmoid_vs_relu"])
    assert cfg.hydra.runtime.choices.scale == "cpu"
    assert (cfg.data.train_size, cfg.data.val_size, cfg.data.batch_size, cfg.trainer.max_epochs) == (4000, 500, 64, 6)
    assert (cfg.model.width, cfg.model.stages, cfg.model.convs_per_stage) == (8, 4, 2)
    assert compose([]).data.train_size == 8000  # no study: scale=cpu changes nothing


def test_scale_gpu_is_the_full_size_on_a_gpu_trainer(monkeypatch) -> None:
    from experiments.validation import trainer

    monkeypatch.setattr(trainer, "gpu_available", lambda accelerator="gpu": True)  # sound, on a machine with a GPU
    cfg = compose(["experiment=plain_vs_residual", "scale=gpu"])
    assert cfg.hydra.runtime.choices.trainer == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert (cfg.data.train_size, cfg.data.image_size, cfg.model.width, cfg.trainer.max_epochs) == (50000, 32, 16, 30)
    validate(cfg)


def test_the_user_command_line_beats_the_scale() -> None:
    cfg = compose(["experiment=plain_vs_residual", "scale=paper", "data.batch_size=64", "optimizer=adamw",
                   "trainer=cpu"])
    assert cfg.data.batch_size == 64 and cfg.optimizer._target_ == "torch.optim.AdamW"
    assert cfg.hydra.runtime.choices.trainer == "cpu"


def test_a_studys_own_groups_beat_the_paper_scale() -> None:
    cfg = compose(["experiment=mse_vs_ce", "scale=paper"])  # Nielsen: plain SGD, not the scale's momentum
    assert cfg.hydra.runtime.choices.optimizer == "sgd" and cfg.optimizer.momentum == 0
    assert (cfg.optimizer.lr, cfg.data.batch_size, cfg.trainer.max_epochs, cfg.scheduler.gamma) == (0.5, 10, 30, 1.0)
    assert cfg.hydra.runtime.choices.augment == "none"


def test_plain_vs_residual_at_scale_paper_is_he_et_al_table_6() -> None:
    """He, Zhang, Ren & Sun 2016, Sec. 4.2 (CIFAR-10), key by key."""
    cfg = compose(["experiment=plain_vs_residual", "scale=paper", "data=cifar10", "model.depth=110"])
    choices = cfg.hydra.runtime.choices
    expected = {
        "model._target_": "experiments.models.resnet.ResNet",  # option-A shortcuts
        "model.width": 16,  # 16-32-64 filters
        "model.residual": True,
        "data.train_size": None, "data.test_size": None,  # all 50k training images, the 10k test images
        "data.val_size": 0,  # nothing held out (the 45k/5k split: data.val_size=null)
        "data.image_size": 32, "data.batch_size": 128,
        "augment.pad": 4, "augment.flip": 0.5,  # 4-pixel padding, random 32x32 crop, horizontal flip
        "optimizer._target_": "torch.optim.SGD", "optimizer.lr": 0.1, "optimizer.momentum": 0.9,
        "optimizer.weight_decay": 0.0001,
        "scheduler._target_": "experiments.tasks.schedules.step", "scheduler.milestones": [0.5, 0.75],
        "scheduler.gamma": 0.1,  # /10 at 32k and 48k of 64k iterations
        "scheduler.warmup_steps": 400, "scheduler.warmup_factor": 0.1,  # ResNet-110: 0.01 for ~400 iterations
        "trainer.max_steps": 64000, "trainer.max_epochs": None,
        "callbacks.model_checkpoint.save_top_k": 0,  # the final weights are tested
        "init.scheme": "kaiming",  # He et al. 2015's initialisation
    }
    for key, value in expected.items():
        found = OmegaConf.select(cfg, key)
        assert (OmegaConf.to_container(found) if OmegaConf.is_config(found) else found) == value, key
    assert (choices.optimizer, choices.scheduler, choices.augment, choices.norm, choices.data) == (
        "momentum", "step", "crop_flip", "batch", "cifar10")
    assert sweep(["experiment=plain_vs_residual", "scale=paper"])["model.depth"] == "20,32,44,56,110"
    assert sweep(["experiment=plain_vs_residual"])["model.depth"] == "20,56"  # scale=cpu: the study's own grid
    for depth in (20, 32, 44, 56):  # only the 110-layer net is warmed up
        cfg = compose(["experiment=plain_vs_residual", "scale=paper", f"model.depth={depth}"])
        assert cfg.scheduler.warmup_steps == 0


def test_the_paper_config_validates_and_the_45k_5k_split_is_one_override(tmp_path, monkeypatch) -> None:
    from experiments.validation import trainer
    from tests.data.vision_fixtures import write_cifar10

    monkeypatch.setattr(trainer, "gpu_available", lambda accelerator="gpu": True)  # scale=paper trains on a GPU
    write_cifar10(tmp_path)
    validate(compose(["experiment=plain_vs_residual", "scale=paper", "data=cifar10", f"data.root={tmp_path}"]))
    split = compose(["experiment=plain_vs_residual", "scale=paper", "data=cifar10", f"data.root={tmp_path}",
                     "data.val_size=null"])
    validate(split)
    assert split.data.val_fraction == 0.1  # 5k of CIFAR-10's 50k


def test_no_validation_images_cannot_choose_the_checkpoint() -> None:
    from experiments.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.val_size=0 is invalid: with no validation images .* add "
                                          r"callbacks.model_checkpoint.save_top_k=0"):
        validate(compose(["data.val_size=0"]))
    validate(compose(["data.val_size=0", "callbacks.model_checkpoint.save_top_k=0"]))


@pytest.mark.parametrize("data", ["shapes", "image_folder", "mnist"])
def test_the_data_stays_the_users_choice_at_every_scale(data: str) -> None:
    for scale in SCALES:
        cfg = compose(["experiment=pooling", f"scale={scale}", f"data={data}"])
        assert cfg.hydra.runtime.choices.data == data


def test_the_warmed_up_step_schedule_runs_at_a_tenth_then_steps() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = step(optimizer, 64000, (0.5, 0.75), 0.1, warmup_steps=400, warmup_factor=0.1)
    rates = {}
    for i in range(48001):
        if i in (0, 399, 400, 31999, 32000, 48000):
            rates[i] = round(optimizer.param_groups[0]["lr"], 6)
        optimizer.step()
        schedule.step()
    assert rates == {0: 0.01, 399: 0.01, 400: 0.1, 31999: 0.1, 32000: 0.01, 48000: 0.001}
    state = schedule.state_dict()  # the warm-up is part of a checkpoint's schedule state
    assert state["lr_lambdas"][0]["warmup_steps"] == 400
