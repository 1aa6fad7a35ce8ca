"""Segmentation models: every valid model x upsampling x activation x pooling runs forward and backward, every
invalid one fails with one clear error, outputs keep the input size, and the paper's initialisations hold."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from experiments.config import compose
from experiments.errors import ConfigError
from experiments.layers.activation import ACTIVATIONS, activation_factory
from experiments.layers.init import initialise
from experiments.layers.norm import norm_factory
from experiments.layers.pooling import POOLINGS, pooling_factory
from experiments.layers.upsampling import UPSAMPLINGS, upsampling_factory
from experiments.models.cnn import CNN
from experiments.models.dilated import DilatedNet
from experiments.models.fcn import FCN
from experiments.specs import EncoderSpec, unused_choices
from experiments.validation import validate

THREE, TWO = EncoderSpec(stages=3, convs_per_stage=1, width=4), EncoderSpec(stages=2, convs_per_stage=1, width=4)
TINY = {
    "fcn": lambda act, pool, up: FCN(3, 4, act, pool, up, THREE, fc_width=8),
    "fcn-16s": lambda act, pool, up: FCN(3, 4, act, pool, up, TWO, fc_width=8, variant="16s"),
    "fcn-32s": lambda act, pool, up: FCN(3, 4, act, pool, up, TWO, fc_width=8, variant="32s"),
    "dilated": lambda act, pool, up: DilatedNet(3, 4, act, pool, up, TWO, context_width=6, dilations=(1, 2, 1)),
}
MODEL_OPTION = {"fcn": "fcn", "fcn-16s": "fcn", "fcn-32s": "fcn", "dilated": "dilated"}


def valid(upsampling: str, pooling: str) -> bool:
    return upsampling != "unpool" or pooling == "max"


@pytest.mark.parametrize("model", sorted(TINY))
@pytest.mark.parametrize("upsampling", UPSAMPLINGS)
def test_every_activation_and_pooling_runs_forward_and_backward(model: str, upsampling: str) -> None:
    x, y = torch.randn(2, 3, 17, 16), torch.randint(0, 4, (2, 17, 16))
    for act, pool in itertools.product(sorted(ACTIVATIONS), POOLINGS):
        if not valid(upsampling, pool):
            continue
        factory = activation_factory(act)
        net = initialise(TINY[model](factory, pooling_factory(pool), upsampling_factory(upsampling)), "kaiming",
                         factory.gain)
        out = net(x)
        assert out.shape == (2, 4, 17, 16), (act, pool)
        F.cross_entropy(out, y).backward()
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), (act, pool)
        assert net.encoder.stages[0].convs[0][0].weight.grad.abs().sum() > 0, (act, pool)  # reaches the input


@pytest.mark.parametrize("model", sorted(TINY))
@pytest.mark.parametrize("pooling", [p for p in POOLINGS if p != "max"])
def test_unpool_without_max_pooling_is_one_clear_error(model: str, pooling: str) -> None:
    with pytest.raises(ValueError, match="only max pooling can feed max-unpooling"):
        TINY[model](activation_factory("relu"), pooling_factory(pooling), upsampling_factory("unpool"))
    cfg = compose([f"model={MODEL_OPTION[model]}", f"pooling={pooling}", "upsampling=unpool"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert str(info.value).startswith(f"pooling={pooling} is invalid:") and "use pooling=max" in str(info.value)


@pytest.mark.parametrize("option", ["cnn", "resnet"])
@pytest.mark.parametrize("upsampling", UPSAMPLINGS)
def test_any_upsampling_with_a_model_without_a_decoder_is_valid_and_unused(option: str, upsampling: str) -> None:
    """One way for every upsampling option (unpool was refused, transposed silently ignored): valid, and unused."""
    validate(compose([f"model={option}", f"upsampling={upsampling}"]))
    assert unused_choices(option, {"upsampling": upsampling}) == {"upsampling": f"model={option} has no decoder"}


@pytest.mark.parametrize("model", sorted(TINY))
@pytest.mark.parametrize("upsampling", UPSAMPLINGS)
@pytest.mark.parametrize("size", [32, 33, 47])
def test_output_size_equals_input_size_for_odd_and_even_inputs(model: str, upsampling: str, size: int) -> None:
    net = TINY[model](activation_factory("relu"), pooling_factory("max"), upsampling_factory(upsampling)).eval()
    assert net(torch.randn(1, 3, size, size + 1)).shape == (1, 4, size, size + 1)


def test_fcn_encoder_is_the_cnn_encoder() -> None:
    """Convolutionalisation: the classifier's trained encoder loads into the FCN unchanged."""
    act, pool = activation_factory("relu"), pooling_factory("max")
    spec = EncoderSpec(stages=3, convs_per_stage=2, width=8)
    cnn = CNN(3, 5, 32, act, pool, spec)
    fcn = FCN(3, 5, act, pool, upsampling_factory("bilinear"), spec)
    fcn.encoder.load_state_dict(cnn.encoder.state_dict())
    assert not any(isinstance(m, torch.nn.Linear) for m in fcn.modules())  # no fully connected layer is left


def test_fcn_starts_with_unmodified_coarse_predictions() -> None:
    """Skip scores start at zero (Long et al. 2015), so FCN-8s at init is the 32s prediction upsampled."""
    act, pool, up = activation_factory("relu"), pooling_factory("max"), upsampling_factory("nearest")
    torch.manual_seed(0)
    spec = EncoderSpec(stages=3, convs_per_stage=2, width=4)
    net = initialise(FCN(3, 4, act, pool, up, spec, fc_width=8, variant="8s"), "kaiming", act.gain).eval()
    x = torch.randn(2, 3, 24, 24)
    coarse = net.score(net.head(net.encoder(x)))
    torch.testing.assert_close(net(x), F.interpolate(coarse, scale_factor=8, mode="nearest"))
    for conv in net.skip_scores:
        assert conv.weight.abs().sum() == 0


@pytest.mark.parametrize("act", ["relu", "maxout"])
def test_context_module_identity_init_passes_the_front_end_through(act: str) -> None:
    """Yu & Koltun's identity initialisation: before training, the context module changes nothing but the ReLU."""
    factory = activation_factory(act)
    plain = norm_factory("none")
    front = EncoderSpec(stages=2, convs_per_stage=2, width=4)
    net = initialise(DilatedNet(3, 4, factory, pooling_factory("max"), upsampling_factory("bilinear"), front,
                                context_width=6, norm_layer=plain, identity_init=True), "kaiming", factory.gain)
    x = torch.randn(2, 6, 9, 9)
    expected = x.relu() if act == "relu" else x
    torch.testing.assert_close(net.context(x), expected)
    random = DilatedNet(3, 4, factory, pooling_factory("max"), upsampling_factory("bilinear"), front,
                        context_width=6, norm_layer=plain, identity_init=False)
    assert not torch.allclose(initialise(random, "kaiming", factory.gain).context(x), expected)


def test_dilated_front_end_keeps_a_fine_grid_and_dilates_instead() -> None:
    net = DilatedNet(3, 5, activation_factory("relu"), pooling_factory("max"), upsampling_factory("bilinear"),
                     EncoderSpec(stages=2, convs_per_stage=1, width=4), dilated_stages=2,
                     dilations=(1, 1, 2, 4, 8, 16, 1))
    convs = [m for m in net.dilated.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [2, 4]
    assert [m[0].dilation[0] for m in net.context] == [1, 1, 2, 4, 8, 16, 1]
    features = net.dilated(net.encoder(torch.randn(1, 3, 64, 64)))
    assert features.shape[-2:] == (16, 16)  # two pools only: output stride 4


def test_frozen_deconvolution_adds_no_trainable_parameters() -> None:
    act, pool = activation_factory("relu"), pooling_factory("max")

    def trainable(up):
        net = FCN(3, 4, act, pool, up, EncoderSpec(convs_per_stage=2, width=4), fc_width=8)
        return sum(p.numel() for p in net.parameters() if p.requires_grad)

    bilinear = trainable(upsampling_factory("bilinear"))
    assert trainable(upsampling_factory("transposed", learnable=False)) == bilinear
    # 2 fusion x2 deconvs and the final x2: 4 x 4 classes x (4 x 4) taps each
    assert trainable(upsampling_factory("transposed")) == bilinear + 3 * 4 * 4 * 16
