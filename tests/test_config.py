"""Config tree: every option composes and validates; bad input is one readable sentence before training; old configs
and command lines are upgraded (or refused) by ``config.upgrade_config``."""

from __future__ import annotations

import logging
import time

import pytest
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image

from experiments.config import compose, conf_dir, upgrade_config
from experiments.errors import ConfigError
from experiments.validation import validate
from tests.conftest import run_cli

GROUPS = [
    "activation", "pooling", "norm", "init", "loss", "optimizer", "scheduler", "trainer", "logger", "model", "data",
    "diagnostics", "augment", "upsampling",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_validates(group: str, tmp_path, monkeypatch) -> None:
    from experiments.validation import trainer

    monkeypatch.setattr(trainer, "gpu_available", lambda accelerator="gpu": True)  # trainer=gpu/ddp: sound configs
    for option in options(group):
        overrides = [f"{group}={option}"]
        if group == "model" and option == "resnet":
            overrides.append("model.depth=8")
        if group == "data" and option in ("mnist", "fashion_mnist", "cifar10"):
            overrides += ["data.root=.", "data.num_classes=10"]  # validation checks the folder exists
        if group == "data" and option == "image_folder":  # validation reads an image of each class
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                Image.new("RGB", (8, 8)).save(tmp_path / name / "0.png")
            overrides.append(f"data.root={tmp_path}")
        if group == "upsampling":
            overrides.append("model=fcn")  # a model with a decoder (others only note the choice as unused)
        if group == "data" and option.endswith("_seg"):
            overrides.append("model=fcn")  # segmentation data needs a segmentation model
        if group == "loss" and option.startswith("pixel_"):
            overrides.append("model=autoencoder")  # a reconstruction loss needs a model that reconstructs
        if group == "loss" and option == "dice":
            overrides.append("model=fcn")  # a loss of pixel regions needs a model that labels pixels
        if group == "data" and option in ("mask_folder", "voc"):  # validation reads a sample of the files
            from tests.data.mask_trees import write_mask_folder, write_voc

            voc = option == "voc"
            root = write_voc(tmp_path / "voc", 2, 1) if voc else write_mask_folder(tmp_path / "seg", 2)
            overrides += ["model=fcn", f"data.root={root}", *([] if voc else ["data.num_classes=3"])]
        cfg = compose(overrides)
        validate(cfg)


BAD_INPUTS = [
    (["model=resnet", "model.depth=21"], "model.depth=21", "6n+2"),
    (["activation=maxout", "activation.pieces=1"], "activation.pieces=1", "at least 2"),
    (["model.stages=6"], "model.stages=6", "at most model.stages=5"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1", "positive"),
    (["model=resnet", "pooling=max"], "pooling=max", "stride-2"),
    (["model.kernel_size=4"], "model.kernel_size=4", "odd"),
    (["model.dropout=1.5"], "model.dropout=1.5", "[0, 1)"),
    (["data.batch_size=0"], "data.batch_size=0", "integer >= 1"),
    (["optimizer=momentum", "optimizer.momentum=1.2"], "optimizer.momentum=1.2", "[0, 1)"),
    (["activation=leaky_relu", "activation.negative_slope=-1"], "activation.negative_slope=-1", "slope"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1", "integer >= 0"),  # 0: test (and probe) the start
    (["data.channels=2"], "data.channels=2", "grayscale or RGB"),
    (["model=fcn", "data=shapes"], "data.task=classification", "per-pixel masks"),
    (["model=cnn", "data=shapes_seg"], "data.task=segmentation", "not a labelled map"),
    (["model=fcn", "upsampling=unpool", "pooling=avg"], "pooling=avg", "argmax indices"),
    (["model=fcn", "model.stages=2"], "model.variant=8s", "fuses the scores of 2 earlier pools"),
    (["model=dilated", "model.dilations=[1,0]"], "model.dilations=[1,0]", "positive dilations"),
]


@pytest.mark.parametrize(("overrides", "key_value", "phrase"), BAD_INPUTS)
def test_bad_values_give_one_sentence_naming_key_value_and_fix(overrides, key_value, phrase) -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose(overrides))
    message = str(info.value)
    assert message.startswith(key_value + " is invalid:")
    assert phrase in message
    assert message.count("\n") == 0 and message.endswith(".")
    assert any(word in message for word in ("use ", "set ", "drop ", "pick "))  # it names a fix


@pytest.mark.parametrize(("overrides", "key_value", "phrase"), BAD_INPUTS[:4])
def test_cli_bad_value_exits_nonzero_without_traceback(tmp_path, overrides, key_value, phrase) -> None:
    result = run_cli("experiments.train", *overrides, f"hydra.run.dir={tmp_path}/run")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert key_value in result.stderr and phrase in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before any training


def test_cli_unknown_option_lists_valid_ones(tmp_path) -> None:
    result = run_cli("experiments.train", "activation=sigmod", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2  # a bad input, as a ConfigError: one line, no traceback
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "sigmod" in line
    for valid in ("relu", "sigmoid", "leaky_relu", "maxout"):
        assert valid in result.stderr


def test_cli_help_lists_groups_quickly() -> None:
    start = time.perf_counter()
    result = run_cli("experiments.train", "--help")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0
    for group in GROUPS:
        assert f"{group}:" in result.stdout
    assert "leaky_relu" in result.stdout and "resnet" in result.stdout
    assert elapsed < 10, f"--help took {elapsed:.1f}s"


def test_cli_cfg_job_prints_the_composed_config() -> None:
    result = run_cli("experiments.train", "--cfg", "job", "model=resnet", "activation=tanh")
    assert result.returncode == 0
    assert "experiments.models.resnet.ResNet" in result.stdout
    assert "name: tanh" in result.stdout
    assert "name: stride" in result.stdout  # resnet selects stride pooling


def test_resnet_picks_stride_pooling_and_cnn_keeps_max() -> None:
    assert compose(["model=resnet"]).pooling.name == "stride"
    assert compose([]).pooling.name == "max"


@pytest.mark.parametrize("upsampling", options("upsampling"))
@pytest.mark.parametrize("model", ["fcn", "dilated"])
def test_every_upsampling_composes_and_validates_with_each_segmentation_model(model: str, upsampling: str) -> None:
    cfg = compose([f"model={model}", f"upsampling={upsampling}"])
    validate(cfg)
    assert cfg.upsampling.name == upsampling and cfg.data.task == "segmentation"


RETIRED = ("model.norm={v} is invalid: model.norm moved to the norm config group, one choice for every model; "
           "use norm={o}.")


def test_upgrade_config_refuses_a_retired_override_in_one_sentence_and_passes_the_rest() -> None:
    assert upgrade_config(["norm=none", "seed=1", "-m"]) == ["norm=none", "seed=1", "-m"]
    for override, option in (("model.norm=none", "none"), ("+model.norm=group", "group"), ("model.norm=x", "<option>")):
        with pytest.raises(ConfigError) as info:
            upgrade_config([override])
        assert str(info.value) == RETIRED.format(v=override.split("=")[1], o=option)


def _old_run_config(norm: str) -> DictConfig:
    """A run's config.yaml from before the norm group: ``model.norm`` set, no ``norm`` node."""
    old = OmegaConf.to_container(compose(["model=fcn"]), resolve=False)
    del old["norm"], old["hydra"]
    old["model"]["norm"] = norm
    return OmegaConf.create(old)


def test_upgrade_config_moves_an_old_run_dirs_model_norm_into_the_norm_group(caplog) -> None:
    cfg = _old_run_config("group")
    with caplog.at_level(logging.INFO, logger="experiments.config"):
        assert upgrade_config(cfg) is cfg
    assert "norm" not in cfg.model
    assert OmegaConf.to_container(cfg.norm) == OmegaConf.to_container(OmegaConf.load(conf_dir() / "norm/group.yaml"))
    assert "model.norm=group is now norm=group" in caplog.text
    assert upgrade_config(cfg) is cfg and cfg.norm.name == "group"  # an upgraded (or current) config stays as it is
    validate(cfg)
    assert OmegaConf.to_container(compose(["model=fcn"]).model) == OmegaConf.to_container(cfg.model)  # today's node


def test_upgrade_config_refuses_a_config_with_both_the_retired_key_and_its_group() -> None:
    cfg = compose([])
    with open_dict(cfg):
        cfg.model.norm = "batch"  # an old experiment file merged into today's tree: two answers to one question
    with pytest.raises(ConfigError) as info:
        upgrade_config(cfg)
    assert str(info.value) == RETIRED.format(v="batch", o="batch")
    with pytest.raises(ConfigError) as again:  # validation says the same for a config nobody upgraded
        validate(cfg)
    assert str(again.value) == str(info.value)


def test_evaluate_reads_an_old_run_dir_upgraded(tmp_path) -> None:
    from experiments.evaluate import load_run_config

    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(_old_run_config("none")))
    cfg = load_run_config(tmp_path)
    assert cfg.norm.name == "none" and "norm" not in cfg.model and cfg.run_dir == str(tmp_path)
