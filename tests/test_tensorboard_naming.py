"""TensorBoard run names say what sets a run apart; tag names put the learning curves first (naming.py,
run/tensorboard.py). Pure functions: no training here (tests/test_tensorboard_server.py has the real thing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments.config import conf_dir
from experiments.naming import MAX_NAME, default_choices, run_name, safe_name, swept_keys
from experiments.run.tensorboard import existing_version, final_tag, tensorboard_tag

DEFAULTS = default_choices(conf_dir() / "train.yaml")


def test_swept_keys_come_from_the_grid_and_the_command_line_with_seed_last() -> None:
    keys = swept_keys({"activation": "sigmoid,tanh,relu"},
                      ["seed=0,1,2", "experiment=sigmoid_vs_relu", "data.train_size=256", "hydra.sweep.dir=x"])
    assert keys == ["activation", "seed"]
    assert swept_keys({}, ["seed=0,1", "optimizer.lr=0.1,0.01"]) == ["optimizer.lr", "seed"]
    assert swept_keys({"model.depth": "20,56", "model.residual": "true,false"}) == ["model.depth", "model.residual"]
    # the optuna sweeper's search space is swept too; a single value on the command line is not
    optuna = {"optimizer.lr": "tag(log, interval(0.0003, 0.03))", "model.width": "choice(8, 16, 32)"}
    assert swept_keys(optuna, ["trainer.max_epochs=2"]) == ["optimizer.lr", "model.width"]
    assert swept_keys(None, ["seed=0"]) == []


def test_a_sweep_job_is_named_by_its_swept_values_in_sweep_order_seed_last() -> None:
    job = ["experiment=sigmoid_vs_relu", "seed=1", "data.train_size=256", "activation=sigmoid"]
    assert run_name(job, ["seed", "activation"], DEFAULTS) == "activation=sigmoid,seed=1"
    assert run_name(["model.depth=56", "model.residual=false"], ["model.depth", "model.residual"]) \
        == "model.depth=56,model.residual=false"


def test_a_single_run_is_named_by_its_non_default_choices_then_other_overrides() -> None:
    overrides = ["seed=3", "optimizer.lr=0.1", "activation=relu", "model=fcn", "upsampling=transposed"]
    # activation=relu is train.yaml's default: it sets nothing apart
    assert run_name(overrides, [], DEFAULTS) == "model=fcn,upsampling=transposed,optimizer.lr=0.1,seed=3"
    assert run_name([], [], DEFAULTS) == "defaults"
    assert run_name(["activation=relu"], [], DEFAULTS) == "defaults"
    assert DEFAULTS["activation"] == "relu" and DEFAULTS["experiment"] is None


def test_names_are_one_safe_path_component_of_bounded_length_and_stay_distinct() -> None:
    assert safe_name("data.root=/data/my images") == "data.root=_data_my_images"
    assert safe_name("model.dilations=[1,2,4]") == "model.dilations=[1,2,4]"
    long_a, long_b = ",".join(f"k{i}=v{i}" for i in range(60)), ",".join(f"k{i}=v{i}" for i in range(61))
    a, b = safe_name(long_a), safe_name(long_b)
    assert len(a) == len(b) == MAX_NAME and a != b
    for name in (a, b, safe_name("a=..")):
        assert "/" not in name and name not in (".", "..") and os.path.basename(name) == name


@pytest.mark.parametrize(("tag", "shown"), [
    ("train/loss_epoch", "train/loss_epoch"), ("val/acc", "val/acc"), ("test/iou_circle", "~test/iou_circle"),
    ("epoch", "~epoch"), ("lr-AdamW", "train/lr-AdamW"),
    ("grad_norm/encoder.stages.0.convs.0.0", "~grad_norm/encoder.stages.0.convs.0.0"),
    ("diagnostics/gradient_flow", "~diagnostics/gradient_flow"), ("gap/loss", "~gap/loss"),
    ("~gap/loss", "~gap/loss"),
])
def test_tensorboard_names_keep_learning_tags_and_file_the_rest_after_them(tag: str, shown: str) -> None:
    assert tensorboard_tag(tag) == shown
    assert final_tag("test/acc") == "~final/test/acc"


def test_sorted_as_the_time_series_page_sorts_them_the_learning_curves_come_first() -> None:
    """TensorBoard's natural order compares characters by code, digits and '/' first: ``~`` follows every letter;
    the page opens its first two groups."""
    groups = sorted({tensorboard_tag(t).split("/")[0] for t in
                     ("act_dead/x", "diagnostics/vanishing_ratio", "epoch", "gap/acc", "grad_norm/x", "lr-SGD",
                      "test/acc", "train/loss_epoch", "val/acc", "final/test/acc")})
    assert groups[:2] == ["train", "val"] and all(g.startswith("~") for g in groups[2:])


def test_an_existing_tensorboard_run_is_continued(tmp_path: Path) -> None:
    root = tmp_path / "tensorboard"
    assert existing_version(root) is None
    (root / "activation=relu").mkdir(parents=True)
    assert existing_version(root) is None  # an empty folder holds no run
    (root / "activation=relu" / "events.out.tfevents.1.host").write_bytes(b"")
    assert existing_version(root) == "activation=relu"
    (root / "events.out.tfevents.0.host").write_bytes(b"")  # a run written before runs were named
    assert existing_version(root) == ""


def test_nested_sweeper_params_are_the_dotted_keys_a_yaml_file_writes_flat() -> None:
    """``+hydra.sweeper.params.optimizer.lr=...`` on the command line arrives nested; its key is ``optimizer.lr``."""
    from experiments.naming import flat_params

    nested = {"optimizer": {"lr": "tag(log, interval(1e-4, 1e-1))", "momentum": "0.8,0.9"}, "model.width": "8,16"}
    assert flat_params(nested) == {"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "optimizer.momentum": "0.8,0.9",
                                   "model.width": "8,16"}
    swept = swept_keys(flat_params(nested), ["seed=0,1"])
    assert swept == ["optimizer.lr", "optimizer.momentum", "model.width", "seed"]
