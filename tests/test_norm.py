"""The ``norm`` group: every normalisation builds every model and trains a step, ``group`` clamps its groups to a
divisor, ``layer`` normalises over C, H and W together, and the retired ``model.norm`` key names the new way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from experiments.build import build_network
from experiments.config import compose, group_options
from experiments.errors import ConfigError
from experiments.layers.norm import NormFactory, norm_factory
from experiments.validation import validate
from tests.conftest import run_cli

#: the module each option puts after a conv (None: nothing)
MODULE = {"batch": nn.BatchNorm2d, "group": nn.GroupNorm, "layer": nn.GroupNorm, "instance": nn.InstanceNorm2d,
          "none": None}
NORM_MODULES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)
#: keeps each model a few thousand parameters on 16 px images
SMALL = {
    "cnn": ["model.width=4", "model.hidden=[8]"],
    "resnet": ["model.depth=8", "model.width=4"],
    "fcn": ["model.width=4", "model.convs_per_stage=1", "model.fc_width=8"],
    "dilated": ["model.width=4", "model.convs_per_stage=1", "model.context_width=6", "model.dilations=[1,2,1]"],
}


#: standard architectures keep their own conv biases (documented in models/zoo.py), and down-sample 32x: instance
#: norm needs more than one pixel per map in training, so they get 64 px images
ZOO = ("torchvision", "timm")


def small_network(model: str, norm: str) -> nn.Module:
    size = 64 if model in ZOO else 16
    cfg = compose([f"model={model}", f"norm={norm}", f"data.image_size={size}", *SMALL.get(model, [])])
    validate(cfg)
    torch.manual_seed(0)
    return build_network(cfg)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_norm_option_has_its_module() -> None:
    assert set(MODULE) == set(group_options("norm"))


@pytest.mark.parametrize("model", group_options("model"))
@pytest.mark.parametrize("norm", group_options("norm"))
def test_every_norm_builds_every_model_and_trains_a_step(model: str, norm: str) -> None:
    net = small_network(model, norm).train()
    norms = [m for m in net.modules() if isinstance(m, NORM_MODULES)]
    if MODULE[norm] is None:
        assert not norms
    else:
        assert norms and all(type(m) is MODULE[norm] for m in norms)
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    if model not in ZOO:
        assert (first_conv.bias is None) == (norm != "none")  # a norm's shift replaces the conv bias

    size = 64 if model in ZOO else 16
    x = torch.randn(4, first_conv.in_channels, size, size)
    out = net(x)
    target = torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]))  # labels or per-pixel masks
    loss = F.cross_entropy(out, target)
    before = first_conv.weight.detach().clone()
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert not torch.equal(first_conv.weight, before)  # the step reached the first layer


@pytest.mark.parametrize("model", group_options("model"))
def test_affine_norms_have_the_parameters_of_batch_norm(model: str) -> None:
    """2 x C each, so a norm ablation compares equal parameter counts (none swaps them for conv biases)."""
    counts = {norm: n_params(small_network(model, norm)) for norm in ("batch", "group", "layer", "instance")}
    assert len(set(counts.values())) == 1, counts


def test_default_norm_keeps_the_paper_resnet_parameter_count() -> None:
    cfg = compose(["model=resnet", "data.num_classes=10", "data.channels=3"])
    assert cfg.norm.name == "batch"
    assert n_params(build_network(cfg)) == 269_722  # He et al. 2016, ResNet-20 (tests/test_models.py)


@pytest.mark.parametrize(
    ("channels", "groups", "expected"),
    [(64, 8, 8), (16, 8, 8), (12, 8, 6), (4, 8, 4), (7, 8, 7), (3, 2, 1), (32, 1, 1), (24, 32, 24)],
)
def test_group_norm_uses_the_largest_divisor_of_the_channels_up_to_groups(channels, groups, expected) -> None:
    module = norm_factory("group", groups=groups)(channels)
    assert isinstance(module, nn.GroupNorm)
    assert module.num_groups == expected and channels % module.num_groups == 0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [([], {(6, 6), (12, 6), (24, 8)}), (["activation=maxout", "activation.pieces=3"], {(18, 6), (36, 6), (72, 8)})],
)
def test_group_norm_builds_models_whose_widths_groups_does_not_divide(overrides, expected) -> None:
    """Stages of 6, 12 and 24 channels (x3 before Maxout): each layer gets the largest divisor of its width <= 8."""
    cfg = compose(["norm=group", "model.width=6", "data.image_size=16", *overrides])
    validate(cfg)
    found = {(m.num_channels, m.num_groups) for m in build_network(cfg).modules() if isinstance(m, nn.GroupNorm)}
    assert found == expected


def test_groups_must_be_a_positive_integer() -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose(["norm=group", "norm.groups=0"]))
    assert str(info.value).startswith("norm.groups=0 is invalid: it must be an integer >= 1;")
    with pytest.raises(ValueError, match="integer >= 1"):
        NormFactory("group", 0)


def test_layer_norm_normalises_each_sample_over_channels_and_space_together() -> None:
    torch.manual_seed(0)
    scale = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    shift = torch.tensor([0.0, 3.0, 6.0, 9.0]).view(1, 4, 1, 1) + 10 * torch.arange(3.0).view(3, 1, 1, 1)
    x = torch.randn(3, 4, 5, 5) * scale + shift
    layer = norm_factory("layer")(4)
    out = layer(x)
    torch.testing.assert_close(out, F.layer_norm(x, x.shape[1:]), rtol=1e-4, atol=1e-4)
    per_sample = out.flatten(1)
    torch.testing.assert_close(per_sample.mean(1), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(per_sample.var(1, unbiased=False), torch.ones(3), rtol=0, atol=1e-3)
    # one set of statistics for all channels: their offsets survive, unlike per-channel (instance) norm
    channel_means = out.mean(dim=(2, 3))
    assert (channel_means[:, 1:] > channel_means[:, :-1]).all()
    assert [tuple(p.shape) for p in layer.parameters()] == [(4,), (4,)]  # per-channel affine, any H x W


@pytest.mark.parametrize("value", ["none", "batch", "bogus"])
def test_old_model_norm_key_names_the_norm_group(value: str) -> None:
    fix = f"use norm={value}." if value != "bogus" else "use norm=<option>."
    expected = f"model.norm={value} is invalid: model.norm moved to the norm config group, one choice for every model; "
    with pytest.raises(ConfigError) as override:  # on the command line (Hydra would not know the key)
        compose([f"model.norm={value}"])
    assert str(override.value) == expected + fix
    with pytest.raises(ConfigError) as in_file:  # in a config file, e.g. an old experiment
        validate(compose([f"+model.norm={value}"]))
    assert str(in_file.value) == expected + fix


def test_old_model_norm_key_on_the_command_line_exits_2_with_one_sentence(tmp_path: Path) -> None:
    result = run_cli("experiments.train", "model.norm=none", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines() == [
        "error: model.norm=none is invalid: model.norm moved to the norm config group, one choice for every model; "
        "use norm=none."
    ]


def test_plain_vs_normalised_is_one_group_override() -> None:
    """The sigmoid-vs-ReLU study runs without norms; a command-line norm= still wins over the study's choice."""
    assert compose(["experiment=sigmoid_vs_relu"]).norm.name == "none"
    assert compose(["experiment=sigmoid_vs_relu", "norm=batch"]).norm.name == "batch"
    assert "norm" not in OmegaConf.to_container(compose([]).model)
