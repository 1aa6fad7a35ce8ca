"""The validation registry: one module per config group, each rule registered once with ``@rule(group)``, run by
``validate`` in the order of ``registry.GROUPS`` (then definition order), a ``models=`` rule only for those models."""

from __future__ import annotations

import importlib

import pytest
from omegaconf import DictConfig

from experiments import validation
from experiments.config import compose
from experiments.errors import ConfigError
from experiments.specs import MODELS
from experiments.validation import registry
from experiments.validation.checks import require


def test_rules_run_group_by_group_in_the_declared_order() -> None:
    rules = registry.registered()
    positions = [registry.GROUPS.index(r.group) for r in rules]
    assert positions == sorted(positions)
    assert len({r.name for r in rules}) == len(rules)  # registered once each
    groups = {r.group for r in rules}
    assert {"run", "optimizer", "data", "trainer", "model", "start", "keys"} <= groups
    # each group's module holds its rules: the module is named for the group (runs.py holds run and start)
    for entry in rules:
        module = entry.check.__module__.rsplit(".", 1)[-1]
        assert module == entry.group or (module, entry.group) in {("runs", "run"), ("runs", "start")}, entry.name


def test_model_rules_are_limited_to_options_of_the_model_table() -> None:
    limited = {r.check.__name__: r.models for r in registry.registered("model") if r.models is not None}
    assert limited["_check_fcn"] == {"fcn"} and limited["_check_resnet"] == {"resnet"}
    assert limited["_check_unpool"] == {"fcn", "dilated", "autoencoder"}  # the models that read the upsampling group
    assert all(models <= set(MODELS) for models in limited.values())


def test_the_first_failing_rule_in_order_names_the_error() -> None:
    """Two mistakes: the one of the earlier group is reported (run before optimizer before trainer)."""
    with pytest.raises(ConfigError, match=r"^seed=-1 is invalid"):
        validation.validate(compose(["seed=-1", "optimizer.lr=0", "trainer.max_epochs=-1"]))
    with pytest.raises(ConfigError, match=r"^optimizer\.lr=0 is invalid"):
        validation.validate(compose(["optimizer.lr=0", "trainer.max_epochs=-1"]))


def test_a_new_rule_is_one_decorated_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """What helper modules (validation/keys.py ...) do: register, and validate runs it, for its models only."""
    monkeypatch.setattr(registry, "_RULES", dict(registry._RULES))  # leave the real registry as it was

    @registry.rule("model", models=("fcn",))
    def _check_fcn_width_even(cfg: DictConfig) -> None:
        require(cfg.model.width % 2 == 0, "model.width", cfg.model.width, "the test wants an even width",
                "use model.width=16")

    assert registry.registered("model")[-1].check is _check_fcn_width_even
    with pytest.raises(ConfigError, match=r"^model\.width=15 is invalid: the test wants an even width; use"):
        validation.validate(compose(["model=fcn", "model.width=15"]))
    validation.validate(compose(["model=cnn", "model.width=15"]))  # not a rule of model=cnn


def test_registering_refuses_unknown_groups_and_models() -> None:
    with pytest.raises(ValueError, match="unknown validation group 'modle'"):
        registry.rule("modle")
    with pytest.raises(ValueError, match=r"unknown model options \['vgg'\]"):
        registry.rule("model", models=("cnn", "vgg"))


def test_reloading_a_group_module_replaces_its_rules_instead_of_doubling_them() -> None:
    before = [r.name for r in registry.registered()]
    importlib.reload(importlib.import_module("experiments.validation.activation"))
    assert [r.name for r in registry.registered()] == before
