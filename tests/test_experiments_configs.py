"""Every ready-made study in ``conf/experiment/`` composes, names real options, and validates at every grid point.

No training here: a typo in a grid (``activation=sigmod``) or a grid point the validator rejects would
otherwise surface minutes into a sweep, after the jobs before it have run.
"""

from __future__ import annotations

import itertools

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from experiments.config import compose, conf_dir
from experiments.validation import validate
from tests.conftest import run_cli

#: the classic ablations of the sweeps issue: name -> the keys its grid must vary
GRIDS = {
    "sigmoid_vs_relu": {"activation": {"sigmoid", "tanh", "relu", "leaky_relu", "maxout"}},
    "plain_vs_residual": {"model.depth": {"20", "56"}, "model.residual": {"True", "False"}},
    "upsampling": {"upsampling": {"bilinear", "transposed", "unpool"}},
    "pooling": {"pooling": {"max", "avg", "stride"}},
    "dilation": {"model": {"fcn", "dilated"}},
    "mse_vs_ce": {"loss": {"mse", "cross_entropy"}},
    "augmentation": {"augment": {"none", "flip", "crop_flip"}},
    "unsupervised_vs_supervised": {"pretrain": {"none", "autoencoder"}, "trainer.max_epochs": {"0", "6"}},
    "activation_zoo": {"activation": {"relu", "gelu", "sigmoid"}, "model.arch": {"resnet18", "mobilenet_v3_small"}},
}
OPTUNA = "optuna_lr_wd_width"
#: CPU budget of a default grid point: "finishes on a 2-core CPU in minutes"
MAX_TRAIN_IMAGES, MAX_EPOCHS = 5000, 6


def experiments() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def experiment_file(name: str) -> DictConfig:
    return OmegaConf.load(conf_dir() / "experiment" / f"{name}.yaml")


def grid(name: str) -> dict[str, list[str]]:
    """The basic sweeper's grid of an experiment, parsed with Hydra's own override grammar."""
    params = experiment_file(name).hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.get_key_element(): list(o.sweep_string_iterator()) for o in parsed}


def is_group(key: str) -> bool:
    return (conf_dir() / key).is_dir()


def test_all_classic_ablations_exist() -> None:
    assert set(GRIDS) | {OPTUNA} <= set(experiments())


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_grid_varies_the_studied_keys_over_existing_options(name: str) -> None:
    points = grid(name)
    assert {k: set(v) for k, v in points.items()} == GRIDS[name]
    for key, values in points.items():
        if is_group(key):
            available = {p.stem for p in (conf_dir() / key).glob("*.yaml")}
            assert set(values) <= available, f"{name}: {key} has no option {set(values) - available}"


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_every_grid_point_composes_and_validates(name: str) -> None:
    points = grid(name)
    for values in itertools.product(*points.values()):
        overrides = [f"experiment={name}", *(f"{k}={v}" for k, v in zip(points, values, strict=True))]
        cfg = compose(overrides)
        validate(cfg)
        for key, value in zip(points, values, strict=True):  # the grid value reached the composed config
            if is_group(key):
                continue
            assert str(OmegaConf.select(cfg, key)) == value, (overrides, key)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_default_budget_is_small_and_full_size_knobs_are_documented(name: str) -> None:
    cfg = compose([f"experiment={name}"])
    assert cfg.data.train_size <= MAX_TRAIN_IMAGES and cfg.trainer.max_epochs <= MAX_EPOCHS
    text = (conf_dir() / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert "trainer=gpu" in text and "data.train_size=" in text  # how to run it at full size
    assert f"-m experiment={name}" in text  # how to launch it


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_mse_vs_ce_is_plain_sgd_as_its_header_says(loss: str) -> None:
    """No momentum and no weight decay in either arm: nothing but the loss differs between the two runs."""
    cfg = compose(["experiment=mse_vs_ce", f"loss={loss}"])
    assert cfg.hydra.runtime.choices.optimizer == "sgd"
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.optimizer.momentum == 0 and cfg.optimizer.weight_decay == 0 and not cfg.optimizer.get("nesterov", False)
    assert 0 < cfg.optimizer.lr <= 0.1  # larger plain-SGD steps left cross-entropy at chance in this budget (header)


def test_a_misspelt_experiment_is_hydras_error_naming_the_real_ones(tmp_path) -> None:
    """Not the default configuration trained in silence: one line, exit 2, like any other group's typo."""
    result = run_cli("experiments.train", "experiment=sigmoid_vs_rel", f"hydra.run.dir={tmp_path}/run", timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "experiment/sigmoid_vs_rel" in line
    assert all(name in line for name in experiments())
    assert not (tmp_path / "run").exists()  # nothing ran


def test_no_experiment_is_still_the_default() -> None:
    assert compose([]).hydra.runtime.choices.experiment is None
    assert compose(["experiment=sigmoid_vs_relu"]).hydra.runtime.choices.experiment == "sigmoid_vs_relu"


def test_command_line_keys_replace_the_grid_and_other_groups_still_compose() -> None:
    """``experiment=pooling activation=tanh`` keeps the study's settings and takes the user's activation."""
    cfg = compose(["experiment=pooling", "activation=tanh", "pooling=avg", "data.train_size=64"])
    assert cfg.activation.name == "tanh" and cfg.pooling.name == "avg" and cfg.data.train_size == 64

