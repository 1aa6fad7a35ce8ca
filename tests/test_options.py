"""One list of options per group: the YAML files of conf/<group>/, the code registry that builds them and what
validation accepts are the same set, so adding an option is one YAML file plus one registry entry."""

from __future__ import annotations

import inspect

import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from experiments import validation
from experiments.build import FACTORY_GROUPS
from experiments.config import CHOICE_KEYS, compose, conf_dir, group_options
from experiments.errors import ConfigError
from experiments.layers.activation import ACTIVATIONS
from experiments.layers.init import INIT_SCHEMES
from experiments.layers.norm import NORMS
from experiments.layers.pooling import POOLINGS
from experiments.layers.upsampling import UPSAMPLINGS
from experiments.models.fcn import FCN
from experiments.models.resnet import ResNet
from experiments.specs import FCN_VARIANTS, MODELS, RESNET_DEPTHS, EncoderSpec, resnet_blocks_per_stage

#: group -> the names the code can build (where "adding one" puts its registry entry)
REGISTRIES = {
    "activation": ACTIVATIONS,  # experiments/layers/activation.py
    "pooling": POOLINGS,  # experiments/layers/pooling.py
    "norm": NORMS,  # experiments/layers/norm.py
    "upsampling": UPSAMPLINGS,  # experiments/layers/upsampling.py
    "init": INIT_SCHEMES,  # experiments/layers/init.py
    "model": MODELS,  # experiments/specs.py
}


def with_option(group: str, option: str) -> list[str]:
    """Overrides choosing ``option``, plus a model that can use it (upsampling needs a segmentation model)."""
    return [f"{group}={option}", *(["model=fcn"] if group == "upsampling" else [])]


def test_every_option_group_has_a_registry() -> None:
    assert set(REGISTRIES) == {*CHOICE_KEYS, "model"}
    assert set(FACTORY_GROUPS) <= set(CHOICE_KEYS)  # every factory a model receives is a checked choice


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_yaml_options_and_code_registry_agree(group: str) -> None:
    files, code = set(group_options(group)), set(REGISTRIES[group])
    assert files - code == set(), f"conf/{group}/ has options the code cannot build: add their registry entries"
    assert code - files == set(), f"the {group} registry builds options without conf/{group}/<name>.yaml"


@pytest.mark.parametrize("group", sorted(CHOICE_KEYS))
def test_each_yaml_file_names_its_own_option(group: str) -> None:
    key = CHOICE_KEYS[group]
    for option in group_options(group):
        assert OmegaConf.load(conf_dir() / group / f"{option}.yaml")[key] == option, (group, option)


@pytest.mark.parametrize("group", sorted(CHOICE_KEYS))
def test_validation_rejects_a_name_outside_the_group_and_lists_the_options(group: str) -> None:
    key = CHOICE_KEYS[group]
    cfg = compose([*with_option(group, group_options(group)[0]), f"{group}.{key}=not_an_option"])
    with pytest.raises(ConfigError) as info:
        validation.validate(cfg)
    message = str(info.value)
    assert message.startswith(f"{group}.{key}=not_an_option is invalid: the {group} options are ")
    assert all(option in message for option in REGISTRIES[group])
    assert f"pick one with {group}=<option>" in message


@pytest.mark.parametrize("group", sorted(FACTORY_GROUPS))
def test_every_factory_option_instantiates_to_a_factory(group: str) -> None:
    for option in group_options(group):
        factory = instantiate(OmegaConf.load(conf_dir() / group / f"{option}.yaml"))
        assert callable(factory) and factory.name == option


@pytest.mark.parametrize("option", sorted(MODELS))
def test_model_registry_matches_each_model_yaml_and_validation(option: str) -> None:
    cfg = compose([f"model={option}"])
    cls = get_class(cfg.model._target_)
    assert cls.__name__ == MODELS[option].cls and cfg.model._target_ == MODELS[option].builder
    assert validation.model_option(cfg) == option
    assert validation.run_task(cfg) == MODELS[option].task  # the model picks data it can learn from (or its task)
    accepted = inspect.signature(cls).parameters
    assert "act_layer" in accepted and "norm_layer" in accepted  # activation and norm reach every model
    assert {o for r in validation.registered("model") for o in r.models or ()} <= set(MODELS)  # each model's rules


@pytest.mark.parametrize("variant", [*FCN_VARIANTS, "4s"])
def test_fcn_variants_are_one_list_for_the_model_and_validation(variant: str) -> None:
    cfg = compose(["model=fcn", f"model.variant={variant}", "model.stages=3"])
    if variant in FCN_VARIANTS:
        validation.validate(cfg)
        factories = {k: instantiate(cfg[g]) for g, k in FACTORY_GROUPS.items()}
        FCN(3, 4, factories["act_layer"], factories["pool_layer"], factories["upsample_layer"],
            EncoderSpec(stages=3, width=4), fc_width=8, variant=variant)
        return
    with pytest.raises(ConfigError, match="FCN variants are 32s, 16s and 8s"):
        validation.validate(cfg)
    with pytest.raises(ValueError, match="unknown FCN variant"):
        FCN(3, 4, *(instantiate(cfg[g]) for g in ("activation", "pooling", "upsampling")), variant=variant)


@pytest.mark.parametrize("depth", [2, 8, 9, 14, 20, 21, 26])
def test_resnet_depth_rule_is_one_rule_for_the_model_and_validation(depth: int) -> None:
    assert all(resnet_blocks_per_stage(d) for d in RESNET_DEPTHS)
    cfg = compose(["model=resnet", f"model.depth={depth}", "model.width=2"])
    act = instantiate(cfg.activation)
    if resnet_blocks_per_stage(depth) is not None:
        validation.validate(cfg)
        ResNet(3, 4, act, depth=depth, width=2)
        return
    with pytest.raises(ConfigError, match="6n\\+2"):
        validation.validate(cfg)
    with pytest.raises(ValueError, match="6n\\+2"):
        ResNet(3, 4, act, depth=depth, width=2)
