"""The one table (experiments/specs.py): every model YAML has its row and the row its YAML, YAML values are the code's
declared defaults, the encoder is one EncoderSpec reached by the flat keys, the stage walker gives every consumer
the same stage outputs, and an unused group choice trains, said once and recorded."""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.fx as fx
from hydra.utils import get_class
from omegaconf import OmegaConf

from experiments.build import FACTORY_GROUPS, build_network
from experiments.config import compose, conf_dir, group_options
from experiments.layers.activation import activation_factory
from experiments.layers.pooling import pooling_factory
from experiments.models.encoder import Encoder
from experiments.specs import (
    ENCODER_KEYS,
    ENCODER_MODELS,
    MODELS,
    SWAPPABLE_GROUPS,
    TASKS,
    EncoderSpec,
    model_option,
    run_task,
    unused_choices,
)
from experiments.train import train
from experiments.validation import validate


def model_node(option: str) -> dict[str, Any]:
    """conf/model/<option>.yaml's model node as written (a ``@package _global_`` file nests it under ``model``)."""
    raw = OmegaConf.load(conf_dir() / "model" / f"{option}.yaml")
    node = raw.model if "model" in raw else raw
    return OmegaConf.to_container(node, resolve=False)


def code_default(cls: type, key: str) -> Any:
    """What the class declares for the flat key: its ``ENCODER`` for an encoder key, else the constructor default."""
    declared = getattr(cls, "ENCODER", None)
    if declared is not None and key in ENCODER_KEYS:
        return getattr(declared, key)
    return inspect.signature(cls).parameters[key].default


def same(yaml_value: Any, default: Any) -> bool:
    """A YAML list is a code tuple; a code default of None stands for an empty mapping or list (no mutable default)."""
    if isinstance(default, tuple):
        default = list(default)
    if default is None and yaml_value in ({}, []):
        return True
    return yaml_value == default and type(yaml_value) is type(default) or (
        isinstance(default, float) and isinstance(yaml_value, (int, float)) and float(yaml_value) == default)


# -- one table row per model YAML --------------------------------------------------------------------------------


def test_every_model_yaml_has_a_table_row_and_every_row_a_yaml() -> None:
    assert set(group_options("model")) == set(MODELS)


@pytest.mark.parametrize("option", sorted(MODELS))
def test_the_rows_builder_is_the_yamls_target_and_its_task_is_a_task(option: str) -> None:
    spec = MODELS[option]
    assert model_node(option)["_target_"] == spec.builder
    assert get_class(spec.builder).__name__ == spec.cls
    assert spec.task in TASKS and set(spec.groups) <= set(SWAPPABLE_GROUPS)
    cfg = compose([f"model={option}"])
    assert model_option(cfg) == option and run_task(cfg) == spec.task  # the model's YAML picks data it learns from


@pytest.mark.parametrize("option", sorted(MODELS))
def test_the_rows_groups_are_what_the_constructor_takes(option: str) -> None:
    """A group the row says the model reads reaches its constructor as a factory, and no other: the unused-choice
    note cannot lie. (ResNet reads pooling as a rule, pooling=stride, not a factory.)"""
    spec = MODELS[option]
    accepted = inspect.signature(get_class(spec.builder)).parameters
    for group, param in FACTORY_GROUPS.items():
        if spec.pooling is not None and group == "pooling":
            assert param not in accepted and group in spec.groups
            continue
        assert (param in accepted) == (group in spec.groups), (option, group)


@pytest.mark.parametrize("option", sorted(MODELS))
def test_every_model_yaml_value_is_the_codes_declared_default(option: str) -> None:
    """The YAML (what runs) and the code's defaults cannot drift: every literal value of conf/model/<option>.yaml
    equals the class's declared default (its ``ENCODER`` for encoder keys); interpolated values come from the data."""
    cls = get_class(MODELS[option].builder)
    node = model_node(option)
    params = inspect.signature(cls).parameters
    for key, value in node.items():
        if key == "_target_" or (isinstance(value, str) and value.startswith("${")):
            continue
        assert key in params or key in ENCODER_KEYS, f"{option}.yaml: {key} is not a constructor argument"
        default = code_default(cls, key)
        if default is inspect.Parameter.empty:  # a required argument (the zoo's arch): the YAML must set it
            continue
        assert same(value, default), f"conf/model/{option}.yaml has {key}: {value}, the code declares {default!r}"


@pytest.mark.parametrize("option", ENCODER_MODELS)
def test_encoder_models_declare_their_encoder_and_their_yaml_sets_every_flat_key(option: str) -> None:
    cls = get_class(MODELS[option].builder)
    assert isinstance(cls.ENCODER, EncoderSpec)
    assert set(ENCODER_KEYS) <= set(model_node(option))  # model.<key>=... works on the command line for every key
    assert "encoder" in inspect.signature(cls).parameters
    assert not set(ENCODER_KEYS) & set(inspect.signature(cls).parameters)  # described once, not again
    without = [o for o in MODELS if o not in ENCODER_MODELS]
    assert all(not hasattr(get_class(MODELS[o].builder), "ENCODER") for o in without)


def test_pretraining_autoencoder_takes_every_encoder_key_of_the_run() -> None:
    node = OmegaConf.to_container(OmegaConf.load(conf_dir() / "pretrain" / "autoencoder.yaml").model)
    assert {k: node[k] for k in ENCODER_KEYS} == {k: f"${{model.{k}}}" for k in ENCODER_KEYS}
    assert node["_target_"] == MODELS["autoencoder"].builder


def test_flat_keys_reach_the_encoder_spec() -> None:
    cfg = compose(["model=fcn", "model.width=8", "model.stages=2", "model.variant=16s", "data.image_size=16"])
    net = build_network(cfg)
    assert net.encoder.spec == EncoderSpec(stages=2, convs_per_stage=2, width=8)
    assert net.encoder.widths == [8, 16]
    spec, rest = EncoderSpec(width=3).split({"width": 5, "growth": 1.5, "fc_width": 7})
    assert spec == EncoderSpec(width=5, growth=1.5) and rest == {"fc_width": 7}
    assert EncoderSpec(width=16, growth=2.0, max_width=40).widths == [16, 32, 40]
    assert {f.name for f in fields(EncoderSpec)} == set(ENCODER_KEYS)


# -- tasks ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_module_monitors_the_tables_metric(task: str) -> None:
    spec = TASKS[task]
    module = get_class(spec.builder)
    assert module.monitor == spec.monitor == f"val/{spec.metric}" and module.monitor_mode == spec.mode == "max"
    assert spec.direction == "maximize"


# -- the stage walker -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("indices", [False, True])
def test_forward_stages_gives_every_pool_and_ends_where_forward_ends(indices: bool) -> None:
    encoder = Encoder(3, activation_factory("relu"), pooling_factory("max"), EncoderSpec(stages=3, width=4),
                      return_indices=indices).eval()
    x = torch.randn(2, 3, 17, 16)
    stages = encoder.forward_stages(x, with_indices=indices)
    assert [tuple(o.shape) for o in stages.outputs] == [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2)]
    assert [tuple(s) for s in stages.sizes] == [(17, 16), (8, 8), (4, 4)]
    assert torch.equal(stages.outputs[-1], encoder(x))
    if indices:
        assert [tuple(i.shape) for i in stages.indices] == [tuple(o.shape) for o in stages.outputs]
    else:
        assert stages.indices == [None, None, None]
        with pytest.raises(ValueError, match="return_indices"):
            encoder.forward_stages(x, with_indices=True)


@pytest.mark.parametrize("option", ["fcn", "dilated", "autoencoder"])
def test_models_walking_stages_with_unpooling_stay_fx_traceable(option: str) -> None:
    cfg = compose([f"model={option}", "upsampling=unpool", "pooling=max", "model.width=4", "data.image_size=16"])
    net = build_network(cfg).eval()
    traced = fx.symbolic_trace(net)
    x = torch.randn(1, int(cfg.data.channels), 16, 16)
    torch.testing.assert_close(traced(x), net(x))


# -- an unused group choice ---------------------------------------------------------------------------------------


def test_unused_choices_names_the_group_and_why() -> None:
    choices = {"model": "cnn", "upsampling": "unpool", "pooling": "max", "pretrain": "none"}
    assert unused_choices("cnn", choices) == {"upsampling": "model=cnn has no decoder"}
    assert unused_choices("cnn", choices, chosen={"pooling"}) == {}  # the default choice is no news
    assert unused_choices("fcn", {**choices, "model": "fcn"}) == {}
    assert unused_choices("cnn", {**choices, "pretrain": "autoencoder"}) == {}  # pre-training's decoder reads it
    assert unused_choices(None, choices) == {}  # a model class outside the table


@pytest.mark.parametrize(("option", "upsampling"), [("cnn", "unpool"), ("cnn", "bilinear"), ("fcn", "unpool"),
                                                     ("fcn", "bilinear")])
def test_a_sweep_mixing_models_with_any_upsampling_validates(option: str, upsampling: str) -> None:
    validate(compose([f"model={option}", f"upsampling={upsampling}"]))


def test_an_unused_choice_trains_is_said_once_and_is_recorded(make_cfg, capfd: pytest.CaptureFixture,
                                                              tmp_path: Path) -> None:
    cfg = make_cfg(["model=cnn", "upsampling=unpool", "data.image_size=16", "data.train_size=64", "data.val_size=32",
                    "data.test_size=32", "logger=[]", "diagnostics=off", "model.width=4"])
    result = train(cfg)
    err = capfd.readouterr().err
    assert err.count("upsampling=unpool is not used (model=cnn has no decoder)") == 1
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed" and result["status"] == "completed"
    assert record["unused_choices"] == {"upsampling": "model=cnn has no decoder"}
