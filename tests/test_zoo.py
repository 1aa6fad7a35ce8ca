"""Standard architectures under the ablation switches (models/zoo.py): every activation reaches every non-linearity
of torchvision's ResNet/VGG/MobileNet (and timm's with the extra), the swapped modules are the ones the
diagnostics read, the data decide the stem and the head, pretrained weights come from a local file only, and a
choice that cannot apply is one sentence before anything trains."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from experiments.build import build_network
from experiments.config import conf_dir, group_options
from experiments.diagnostics.activations import activation_modules
from experiments.errors import CheckpointError, ConfigError
from experiments.models.zoo import NONLINEARITIES, TimmNet, TorchvisionNet
from experiments.validation import validate

#: every activation option but maxout (refused: it needs k x the channels the architecture fixes)
ACTIVATIONS = [a for a in group_options("activation") if a != "maxout"]
#: torchvision's types that stand for each activation option after the swap
EXPECTED = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "elu": nn.ELU,
            "gelu": nn.GELU, "prelu": nn.PReLU, "identity": nn.Identity}
timm_installed = pytest.mark.skipif(importlib.util.find_spec("timm") is None,
                                    reason="timm not installed: pip install -e '.[timm]' (the dev extra has it)")


def factory(group: str, option: str, **overrides):
    node = OmegaConf.load(conf_dir() / group / f"{option}.yaml")
    return instantiate(OmegaConf.merge(node, overrides))


def zoo(arch: str, activation: str = "relu", pooling: str = "max", norm: str = "batch", cls=TorchvisionNet,
        channels: int = 3, classes: int = 6, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return cls(arch, channels, classes, factory("activation", activation), factory("pooling", pooling),
               factory("norm", norm), image_size=32, **kwargs)


def train_step(network: nn.Module, channels: int = 3, classes: int = 6, batch: int = 4) -> float:
    """One AdamW step on a fixed batch; the loss after it (the weights must have changed)."""
    x, y = torch.randn(batch, channels, 32, 32), torch.arange(batch) % classes
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in network.parameters()]
    loss = nn.functional.cross_entropy(network(x), y)
    loss.backward()
    loss = loss.detach()
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, network.parameters(), strict=True))
    return float(loss)


def check_activations(network: nn.Module, activation: str) -> None:
    """The swapped list is every non-linearity, all now the chosen kind, and what the activation statistics read."""
    swapped = network.replaced["activation"]
    assert swapped and all(type(network.get_submodule(n)) is EXPECTED[activation] for n in swapped)
    assert sorted(activation_modules(network)) == network.activation_names
    assert len(network.activation_names) == len({id(network.get_submodule(n)) for n in swapped})
    if activation != "relu":  # none of the architecture's own non-linearities is left
        assert not any(isinstance(m, NONLINEARITIES) and type(m) is not EXPECTED[activation]
                       for m in network.modules())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_each_activation_reaches_every_nonlinearity_and_trains(arch: str, activation: str) -> None:
    network = zoo(arch, activation)
    check_activations(network, activation)
    train_step(network, batch=2)


@pytest.mark.slow
@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "prelu"])
@pytest.mark.parametrize("arch", ["resnet50", "vgg11_bn"])
def test_each_activation_on_the_large_architectures(arch: str, activation: str) -> None:
    network = zoo(arch, activation)
    check_activations(network, activation)
    train_step(network, batch=2)


@pytest.mark.parametrize(("arch", "count"), [("resnet50", 17), pytest.param("vgg11_bn", 10, marks=pytest.mark.slow)])
def test_large_architectures_take_an_activation_and_train_on_32px_images(arch: str, count: int) -> None:
    """vgg11_bn (129 M parameters, almost all in its 25088 x 4096 classifier) takes ~20 s on a CPU: slow only."""
    network = zoo(arch, "gelu")  # vgg's adaptive 7x7 pool serves the 1x1 map of a 32x32 image
    check_activations(network, "gelu")
    assert len(network.activation_names) == count
    train_step(network, batch=2)


def test_learning_happens_in_a_swapped_architecture() -> None:
    network = zoo("resnet18", "gelu")
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 6
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):  # a fixed batch of 8 is learnt by heart
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(network(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_pooling_keeps_each_layers_geometry_and_norm_reaches_every_batch_norm() -> None:
    native = zoo("resnet18", keep=["activation", "pooling", "norm"])
    assert native.replaced == {} and type(native.net.maxpool) is nn.MaxPool2d
    avg = zoo("resnet18", pooling="avg", norm="group")
    pool = avg.net.maxpool
    assert type(pool) is nn.AvgPool2d and (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert avg.replaced["pooling"] == ["net.maxpool"] and len(avg.replaced["norm"]) == 20
    assert not any(isinstance(m, nn.BatchNorm2d) for m in avg.modules())
    stride = zoo("resnet18", pooling="stride").net.maxpool
    assert isinstance(stride, nn.Conv2d) and stride.in_channels == 64
    assert (stride.kernel_size, stride.stride, stride.padding) == ((3, 3), (2, 2), (1, 1))
    x = torch.randn(2, 3, 32, 32)
    for network in (native, avg):
        network.eval()
        feature = network.net.layer1(network.net.maxpool(network.net.relu(network.net.bn1(network.net.conv1(x)))))
        assert feature.shape == (2, 64, 8, 8)  # the architecture's shapes are kept


def test_the_data_decide_stem_channels_and_classes() -> None:
    network = zoo("resnet18", channels=1, classes=4)
    assert network.stem == "net.conv1" and network.net.conv1.in_channels == 1
    assert network.net.conv1.kernel_size == (7, 7) and network.net.conv1.stride == (2, 2)
    assert network.head == "net.fc" and network.net.fc.out_features == 4
    assert network(torch.randn(3, 1, 32, 32)).shape == (3, 4)


def test_a_choice_with_nothing_to_swap_is_one_sentence_and_a_shared_multi_width_prelu_is_refused() -> None:
    network = zoo("mobilenet_v3_small", pooling="avg")
    assert network.notes == ["pooling=avg does not apply to torchvision mobilenet_v3_small: it has no max- or "
                             "average-pooling layers (global pooling is not swapped)"]
    with pytest.raises(ConfigError) as info:  # a Bottleneck applies one ReLU module to 64 and 256 channels
        zoo("resnet50", "prelu")
    message = str(info.value)
    assert message.startswith("activation=prelu is invalid: torchvision resnet50's net.layer1.0.relu is one module "
                              "applied to") and message.endswith("(e.g. activation.per_channel=false).")
    shared = TorchvisionNet("resnet50", 3, 6, factory("activation", "prelu", per_channel=False), image_size=32)
    assert all(m.weight.numel() == 1 for m in shared.modules() if isinstance(m, nn.PReLU))


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        (["activation=maxout"], "activation=maxout is invalid: maxout needs k times the channels"),
        (["model.keep=[pooling,depth]"], "model.keep=[pooling,depth] is invalid: it lists the groups"),
        (["model.weights=/no/such/weights.pth"], "model.weights=/no/such/weights.pth is invalid: no such file"),
    ],
    ids=["maxout", "keep", "weights"],
)
def test_validation_refuses_what_cannot_apply_in_one_sentence(make_cfg, overrides: list[str], phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase.replace("[", r"\[").replace("]", r"\]")) as info:
        validate(make_cfg(["model=torchvision", *overrides]))
    assert "\n" not in str(info.value)
    validate(make_cfg(["model=torchvision", "activation=maxout", "model.keep=[activation]"]))  # kept: no swap


def test_an_unknown_architecture_is_one_sentence_before_training(make_cfg, capsys) -> None:
    from experiments.inspect import main

    with pytest.raises(ConfigError, match=r"model.arch=resnet19 is invalid: torchvision has no classifier"):
        build_network(make_cfg(["model=torchvision", "model.arch=resnet19"]))
    assert main(["model=torchvision", "model.arch=inception_v3"]) == 2  # needs 75 px or more
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model.arch=inception_v3 is invalid: it cannot take 32x32 images (")
    assert "\n" not in err


def test_pretrained_weights_load_from_a_local_file_adapting_stem_and_head(make_cfg, tmp_path: Path) -> None:
    torch.manual_seed(1)
    published = torchvision_resnet18()  # what a torchvision .pth file holds: RGB stem, 1000 classes
    torch.save(published.state_dict(), tmp_path / "resnet18.pth")
    cfg = make_cfg(["model=torchvision", f"model.weights={tmp_path / 'resnet18.pth'}", "data.channels=1"])
    validate(cfg)
    network = build_network(cfg)
    assert torch.equal(network.net.layer2[0].conv1.weight, published.layer2[0].conv1.weight)
    assert torch.equal(network.net.bn1.running_var, published.bn1.running_var)
    # a grey pixel x meets what the RGB kernels give to (x, x, x): the kernels summed over the colours
    assert torch.allclose(network.net.conv1.weight, published.conv1.weight.sum(1, keepdim=True), atol=1e-6)
    assert network.net.fc.weight.shape == (6, 512)  # 6 classes: the head keeps its initialisation
    assert network.pretrained["kept_initialised"] == ["fc.bias", "fc.weight"] and network.pretrained["stem_adapted"]

    group = build_network(make_cfg(["model=torchvision", f"model.weights={tmp_path / 'resnet18.pth'}", "norm=group"]))
    assert torch.equal(group.net.conv1.weight, published.conv1.weight)  # convs load; GroupNorm keeps its init
    assert "bn1.weight" in group.pretrained["kept_initialised"]


def test_weights_of_another_architecture_are_one_sentence(make_cfg, tmp_path: Path) -> None:
    state = torchvision_resnet18().state_dict()  # made into resnet34's: a third block in layer1
    state.update({k.replace("layer1.1.", "layer1.2."): v for k, v in state.items() if k.startswith("layer1.1.")})
    torch.save(state, tmp_path / "resnet34.pth")
    cfg = make_cfg(["model=torchvision", f"model.weights={tmp_path / 'resnet34.pth'}"])
    with pytest.raises(CheckpointError) as info:
        build_network(cfg)
    message = str(info.value)
    assert message.startswith(f"model.weights={tmp_path / 'resnet34.pth'} is invalid: it does not hold torchvision "
                              "resnet18 weights: ") and "unexpected (e.g. layer1.2." in message
    assert "\n" not in message
    (tmp_path / "pickle.pth").write_bytes(b"\x80\x04K\x01.")  # a bare pickle is refused before it is unpickled
    with pytest.raises(CheckpointError, match="bare pickle"):
        build_network(make_cfg(["model=torchvision", f"model.weights={tmp_path / 'pickle.pth'}"]))


def torchvision_resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(weights=None)


def test_a_zoo_run_records_its_swapped_modules_next_to_their_activation_statistics(make_cfg) -> None:
    from experiments.train import train

    cfg = make_cfg(["model=torchvision", "model.arch=mobilenet_v3_small", "activation=sigmoid", "data.train_size=64",
                    "data.val_size=16", "data.test_size=16", "data.batch_size=16"])
    record = train(cfg)
    assert record["status"] == "completed"
    saved = json.loads((Path(cfg.run_dir) / "metrics.json").read_text())
    swapped = saved["zoo"]["replaced"]["activation"]
    assert len(swapped) == 33 and saved["zoo"]["arch"] == "mobilenet_v3_small"
    layers = {layer.split("@")[0] for layer in saved["activation_stats"]["layers"]}
    assert layers == set(swapped)  # the Hardsigmoid SE gates are neither swapped nor counted
    assert all(s is not None for s in saved["activation_stats"]["saturated"])  # sigmoid: saturation measured
    assert saved["zoo"]["notes"] and saved["zoo"]["notes"][0].startswith("pooling=max does not apply")


def test_inspect_prints_the_layer_table_flops_and_receptive_field_of_a_zoo_model(capsys, tmp_path: Path) -> None:
    from experiments.inspect import main

    assert main(["model=torchvision", "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in table["rows"]}
    assert rows["net.conv1"]["rf"] == 7 and rows["net.maxpool"]["rf"] == 11  # 7x7/2 conv, then 3x3/2 pool
    assert table["total_flops"] > 0 and table["total_params"] == sum(r["params"] for r in table["rows"])
    assert main(["model=torchvision", "--effective-rf", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "probe: net: conv1 -> bn1 -> relu -> maxpool -> layer1 -> layer2 -> layer3" in out
    assert (tmp_path / "erf.png").is_file()


@timm_installed
@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv3_small_050"])
def test_timm_models_take_the_activation_through_act_layer_and_norm_by_replacement(arch: str) -> None:
    network = zoo(arch, "sigmoid", norm="group", cls=TimmNet, channels=1)
    check_activations(network, "sigmoid")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in network.modules())  # fused norm + act layers too
    assert network.net.conv1.in_channels == 1 if arch == "resnet18" else network.net.conv_stem.in_channels == 1
    train_step(network, channels=1)


@timm_installed
def test_timm_in_a_composed_run_config(make_cfg) -> None:
    cfg = make_cfg(["model=timm", "activation=gelu"])
    validate(cfg)
    network = build_network(cfg)
    assert isinstance(network, TimmNet) and len(network.activation_names) == 17
    assert all(isinstance(network.get_submodule(n), nn.GELU) for n in network.activation_names)
