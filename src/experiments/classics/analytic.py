"""The claims that need no training: measured on freshly built networks in a second or two.

Each function builds the network exactly as ``python -m experiments.train`` would (``compose`` + ``build``,
the same overrides) and measures it with the framework's own analysis code, so the page and
``tests/test_classics.py`` check the same objects a run trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: He et al. 2016, Table 6 (CIFAR-10): depth -> parameters, in millions as printed
HE_TABLE6_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}
#: He et al. 2016, Table 6: depth -> CIFAR-10 test error, %. ResNet-110's 6.43 is the *best of 5 runs* (their
#: mean over the 5 runs: 6.61 ± 0.16); the others are single runs as printed
HE_TABLE6_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
#: He et al. 2016, Table 6: ResNet-110 over 5 runs, "best (mean ± std)"
HE_RESNET110_RUNS = {"best": 6.43, "mean": 6.61, "std": 0.16, "runs": 5}
#: Yu & Koltun 2016, Table 1: receptive field of each layer of the basic context module
YU_KOLTUN_RF = (3, 5, 9, 17, 33, 65, 67, 67)
#: CIFAR-10's geometry (32x32 RGB in, 10 classes out) on the embedded data: nothing is read or downloaded
CIFAR_GEOMETRY = ("data.num_classes=10", "data.image_size=32", "data.channels=3")


def network(overrides: Sequence[str], seed: int = 0) -> nn.Module:
    """The network ``experiments.train`` builds for ``overrides``, initialised from ``seed``."""
    from experiments.build import build_network
    from experiments.config import compose

    torch.manual_seed(seed)
    return build_network(compose(list(overrides)))


def parameter_count(overrides: Sequence[str]) -> int:
    return sum(p.numel() for p in network(overrides).parameters())


def resnet_parameters(depths: Sequence[int] = tuple(HE_TABLE6_PARAMS_M)) -> dict[int, int]:
    """Parameters of the CIFAR ResNet at each depth, at CIFAR-10's geometry (He et al. Table 6)."""
    return {d: parameter_count(["model=resnet", f"model.depth={d}", *CIFAR_GEOMETRY]) for d in depths}


def context_receptive_fields(overrides: Sequence[str] = ("model=dilated",)) -> list[int]:
    """Receptive field after each conv of the dilated model's context module (then its 1x1 score layer),
    in units of the module's input, from the framework's receptive-field analysis."""
    from experiments.analysis.receptive_field import receptive_fields

    net = network(overrides)
    head = nn.Sequential(net.context, net.score)
    channels = next(m for m in net.context.modules() if isinstance(m, nn.Conv2d)).in_channels
    rows = receptive_fields(head, (1, channels, 96, 96))
    return [int(row.rf) for row in rows if row.kind == "conv"]


def transposed_vs_bilinear(overrides: Sequence[str] = ("model=fcn", "upsampling=transposed"), seed: int = 0
                           ) -> list[tuple[int, float, float]]:
    """For every transposed upsampling layer of the FCN as initialised: (factor, largest difference from
    ``F.interpolate(..., mode="bilinear")`` away from the border, largest value compared).

    Long et al. 2015 initialise the deconvolution to bilinear interpolation; away from the outermost
    ``factor`` pixels (where interpolation clamps and the transposed conv sees zero padding) the two agree.
    """
    from experiments.layers.upsampling import BilinearTransposed

    net = network(overrides, seed)
    generator = torch.Generator().manual_seed(seed)
    found = []
    for module in net.modules():
        if not isinstance(module, BilinearTransposed):
            continue
        f, channels = module.factor, module.conv.in_channels
        x = torch.randn(2, channels, 6, 6, generator=generator)
        size = (6 * f, 6 * f)
        with torch.no_grad():
            ours = module(x, size)
            reference = F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)
        inner = (slice(None), slice(None), slice(f, -f), slice(f, -f))
        found.append((f, float((ours - reference)[inner].abs().max()), float(reference[inner].abs().max())))
    return found


def gradient_flow_at_init(overrides: Sequence[str], seed: int = 0, batch: int = 64) -> tuple[list[str], list[float]]:
    """Per-layer weight-gradient norms (input side first) of one cross-entropy step at initialisation, on a batch
    of the run's own training images: what the gradients diagnostic records as ``gradient_flow`` at step 0."""
    from experiments.analysis.depth import CallOrder, weighted_layers
    from experiments.build import build_datamodule, build_network
    from experiments.config import compose
    from experiments.diagnostics.gradients import gradient_norms

    cfg = compose([*overrides, f"data.train_size={batch}", "data.val_size=8", "data.test_size=8"])
    data = build_datamodule(cfg)
    data.setup()
    x, y = data.splits["train"].tensors[:2]
    torch.manual_seed(seed)
    net = build_network(cfg)
    layers = weighted_layers(net)
    order = CallOrder(layers)
    F.cross_entropy(net(x), y).backward()
    names = order.finish()
    grads, _ = gradient_norms([layers[n] for n in names])
    return names, grads


def vanishing_ratio_at_init(overrides: Sequence[str], seed: int = 0) -> float | None:
    """First-layer over last-layer gradient norm at initialisation (the report's ``vanishing_ratio``)."""
    from experiments.diagnostics.gradients import vanishing_ratio

    return vanishing_ratio(gradient_flow_at_init(overrides, seed)[1])


def model_cost(overrides: Sequence[str]) -> tuple[int, int]:
    """(parameters, FLOPs per image) of the network, from the framework's layer summary (as ``inspect``)."""
    from experiments.analysis.summary import summarize
    from experiments.config import compose

    cfg = compose(list(overrides))
    net = network(overrides)
    shape = (1, int(cfg.data.channels), int(cfg.data.image_size), int(cfg.data.image_size))
    summary = summarize(net, shape)
    return int(summary.total_params), int(summary.total_flops)


def loss_gradients(wrong_logit: float = 6.0, classes: int = 6, batch: int = 4) -> dict[str, tuple[float, float]]:
    """Gradient norm w.r.t. the logits of the framework's ``loss=mse`` and ``loss=cross_entropy`` on confidently
    wrong outputs (logit ``wrong_logit`` on class 0, target class 1), and the norm the textbook formula gives:

    * quadratic cost C = 1/(2n) Σ‖y − p‖², p = softmax(z): ∂C/∂z = (1/n) (diag(p) − p pᵀ)(p − y);
    * cross-entropy C = −(1/n) Σ log p_y: ∂C/∂z = (1/n) (p − y).

    The softmax Jacobian ``diag(p) − p pᵀ`` vanishes as p saturates, which is why the quadratic cost learns
    slowly from confident mistakes: Nielsen (ch. 3) makes this argument for sigmoid output units (the factor
    σ′(z)); this is its softmax form. Returns loss -> (framework's norm, formula's norm).
    """
    from hydra.utils import instantiate

    from experiments.config import compose

    logits = torch.zeros(batch, classes)
    logits[:, 0] = wrong_logit
    target = torch.ones(batch, dtype=torch.long)
    p = logits.softmax(dim=1)
    y = F.one_hot(target, classes).float()
    jacobian = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    formulas = {"mse": (jacobian @ (p - y)[:, :, None]).squeeze(-1) / batch, "cross_entropy": (p - y) / batch}
    found = {}
    for name, formula in formulas.items():
        z = logits.clone().requires_grad_(True)
        instantiate(compose([f"loss={name}"]).loss)(z, target).backward()
        found[name] = (float(z.grad.norm()), float(formula.norm()))
    return found


def erf_boxes(overrides: Sequence[str], size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(gradient support, box of 95 % of the gradient mass) of the centre output unit of the network as
    initialised, on a ``size``×``size`` input: what ``inspect --effective-rf`` prints, for the checks that explain
    it (a larger image rules out borders; ``model.identity_init=false`` shows what the identity init hides)."""
    from experiments.analysis.effective_rf import effective_receptive_field
    from experiments.config import compose

    cfg = compose([*overrides, f"data.image_size={size}"])
    found = effective_receptive_field(network([*overrides, f"data.image_size={size}"]),
                                      (1, int(cfg.data.channels), size, size))
    return found.extent, found.effective
