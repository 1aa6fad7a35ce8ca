"""What a prediction rests on: Grad-CAM and Integrated Gradients through Captum, and the model-randomisation check.

The pure parts of ``python -m experiments.explain`` (tensors in, tensors and numbers out; no files):

* **Which layer.** Grad-CAM (Selvaraju et al., ICCV 2017) weighs a convolutional layer's feature maps by the mean
  gradient of the explained score and keeps the positive part. :func:`gradcam_layer` finds the last ``Conv2d`` of
  the network's ``encoder`` (every model of ``models/`` but the ResNet and the zoo nets has one; for those, the last
  ``Conv2d`` of the whole network that is not its class head), a strided-conv pooling step left out (so that every
  ``pooling`` option is explained on the same maps), and takes the output of the block it sits in: a conv -> norm
  -> act block (``models/encoder.ConvBlock``) or a residual block. Those are the rectified maps the paper uses, not
  the raw conv; a conv directly inside a plain ``Sequential`` trunk (torchvision's VGG) is read as it is.
* **What is explained.** Classification: the logit of a class (the predicted one, the true one). Segmentation: the
  sum of class ``c``'s logits over the pixels the trained network predicts as ``c`` (:class:`ClassLogitSum`); the
  pixel selection is fixed from the trained network's prediction and handed to Captum as an additional forward
  argument, so Integrated Gradients explains one fixed function along its whole path (Captum expands additional
  arguments with the interpolation steps), and the randomised networks of the sanity check explain the same pixels.
* **Integrated Gradients** (Sundararajan et al., ICML 2017) from the baseline 0 in standardised space, which is the
  training split's mean colour (the data are standardised with it), summed over colour channels.
* **Sanity check** (Adebayo et al., NeurIPS 2018): re-initialise the weights, from the top layer down (cascade) or
  all at once, and compare the maps by Spearman rank correlation: maps that do not change explain the input, not
  the model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from torch import nn

#: sanity-check modes: re-initialise from the output layer down, one layer at a time, or every layer at once
CASCADE, ALL = "cascade", "all"


def gradcam_layer(network: nn.Module) -> str:
    """The dotted name of the layer Grad-CAM reads (see the module doc); ValueError when the network has no conv."""
    root = getattr(network, "encoder", None)
    prefix = "encoder." if isinstance(root, nn.Module) else ""
    root = root if isinstance(root, nn.Module) else network
    head = getattr(network, "head", None)
    head = head if isinstance(head, str) else None  # the zoo nets record their class head by name

    def skipped(name: str) -> bool:  # the class head; a strided-conv pooling step (pooling=stride) downsamples
        full = prefix + name
        return bool(head and (full == head or full.startswith(head + "."))) or "pool" in name.split(".")

    convs = [name for name, module in root.named_modules() if isinstance(module, nn.Conv2d) and not skipped(name)]
    if not convs:
        raise ValueError(f"{type(network).__name__} has no Conv2d layer for Grad-CAM")
    name = convs[-1]
    parent_name = name.rpartition(".")[0]
    parent = root.get_submodule(parent_name) if parent_name else None
    if isinstance(parent, nn.Sequential):  # conv -> norm -> act (ConvBlock): the block's rectified output
        opens_block = len(parent) > 1 and parent[0] is root.get_submodule(name)
        name = parent_name if opens_block else name
    elif parent is not None:  # a residual block (ours, torchvision's): its output, after the addition and activation
        name = parent_name
    return prefix + name


class ClassLogitSum(nn.Module):
    """Segmentation as one number per image: the sum of class ``cls``'s logits over the pixels in ``mask``
    ``(N, H, W)``, which Captum attributes like a classifier's logit."""

    def __init__(self, network: nn.Module, cls: int) -> None:
        super().__init__()
        self.network = network
        self.cls = cls

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.network(x)[:, self.cls] * mask).flatten(1).sum(dim=1)


@dataclass(frozen=True)
class Objective:
    """What Captum attributes: a forward function, its per-image target (classification) and its extra argument
    (the fixed pixel selection of segmentation)."""

    forward: Callable[..., torch.Tensor]
    target: torch.Tensor | None = None
    extra: torch.Tensor | None = None

    def on(self, network: nn.Module) -> Objective:
        """The same question asked of another network (a re-initialised copy)."""
        forward = ClassLogitSum(network, self.forward.cls) if isinstance(self.forward, ClassLogitSum) else network
        return Objective(forward, self.target, self.extra)


def class_objective(network: nn.Module, classes: torch.Tensor) -> Objective:
    """Explain each image's logit of ``classes[i]`` (a classifier)."""
    return Objective(network, target=classes.long())


def segmentation_objective(network: nn.Module, images: torch.Tensor, cls: int) -> tuple[Objective, torch.Tensor]:
    """Explain the sum of class ``cls``'s logits over the pixels the network predicts as ``cls``; also returns the
    softmax probabilities ``(N, classes, H, W)`` the selection came from."""
    with torch.no_grad():
        probs = network(images).float().softmax(dim=1)
    mask = (probs.argmax(dim=1) == cls).to(images.dtype)
    return Objective(ClassLogitSum(network, cls), extra=mask), probs


@dataclass(frozen=True)
class Maps:
    """Per image: the Grad-CAM map upsampled to the input ``(N, H, W)`` (>= 0), the Integrated Gradients map summed
    over channels ``(N, H, W)`` (signed), and IG's convergence delta ``(N,)`` (completeness error)."""

    gradcam: torch.Tensor
    ig: torch.Tensor
    delta: torch.Tensor


def attribute(network: nn.Module, layer: str, objective: Objective, images: torch.Tensor, steps: int = 32) -> Maps:
    """Grad-CAM on ``layer`` (bilinearly upsampled with Captum's ``LayerAttribution.interpolate``) and Integrated
    Gradients from the zero (mean) baseline with ``steps`` Riemann steps, for ``objective``."""
    extra = (objective.extra,) if objective.extra is not None else None
    cam = LayerGradCam(objective.forward, network.get_submodule(layer))
    coarse = cam.attribute(images, target=objective.target, additional_forward_args=extra, relu_attributions=True)
    gradcam = LayerAttribution.interpolate(coarse, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    ig = IntegratedGradients(objective.forward)
    attributions, delta = ig.attribute(images, baselines=torch.zeros_like(images), target=objective.target,
                                       additional_forward_args=extra, n_steps=steps, return_convergence_delta=True)
    return Maps(gradcam[:, 0].detach().clamp_min(0), attributions.sum(dim=1).detach(), delta.detach().reshape(-1))


def map_stats(values: torch.Tensor) -> dict[str, Any]:
    """A map's summary for ``explain.json``: max, mean, sum and where its peak is (row, column)."""
    flat = values.flatten()
    peak = int(flat.argmax())
    return {"max": float(flat.max()), "mean": float(flat.mean()), "sum": float(flat.sum()),
            "peak": [peak // values.shape[-1], peak % values.shape[-1]]}


def mass_ratio(values: torch.Tensor, region: torch.Tensor) -> float:
    """Mean map value inside ``region`` over the mean outside (> 1: the map rests more on the region than on the
    rest, whatever their areas); inf when nothing outside carries mass, nan when the map is zero."""
    inside, outside = values[region].mean(), values[~region].mean()
    if float(values.sum()) == 0.0:
        return math.nan
    return float(inside / outside) if float(outside) > 0 else math.inf


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two maps (flattened); nan when either map is constant (no ranking)."""
    from scipy.stats import spearmanr

    x, y = a.flatten().double().numpy(), b.flatten().double().numpy()
    if x.min() == x.max() or y.min() == y.max():
        return math.nan
    return float(spearmanr(x, y).statistic)


def reinitialisable(network: nn.Module) -> list[str]:
    """Layers holding weights of their own with a ``reset_parameters`` (convs, linears, norms), input side first."""
    return [name for name, module in network.named_modules()
            if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False))]


def _summary(trained: Maps, random: Maps) -> dict[str, Any]:
    """Mean Spearman correlation over images of each map kind (IG by magnitude, as Adebayo et al. rank it, and signed
    as ``ig_signed``), and how many maps were constant (a rectified Grad-CAM can go all zero, a segmentation class
    with no predicted pixel explains a constant 0: nothing to rank), left out of the mean."""
    out: dict[str, Any] = {}
    for kind in ("gradcam", "ig", "ig_signed"):
        before, after = getattr(trained, kind.removesuffix("_signed")), getattr(random, kind.removesuffix("_signed"))
        if kind == "ig":
            before, after = before.abs(), after.abs()
        rhos = [spearman(b, a) for b, a in zip(before, after, strict=True)]
        defined = [r for r in rhos if not math.isnan(r)]
        out[kind] = sum(defined) / len(defined) if defined else None
        out[f"{kind}_constant"] = len(rhos) - len(defined)
    return out


def randomisation_check(network: nn.Module, layer: str, objective: Objective, images: torch.Tensor,
                        trained: Maps, mode: str = CASCADE, steps: int = 32, seed: int = 0) -> dict[str, Any]:
    """Adebayo et al.'s model-randomisation test on a copy of ``network``: re-initialise its layers (``cascade``:
    from the output layer down, the maps recomputed after each; ``all``: every layer at once, one comparison) and
    return each step's mean Spearman correlation with the ``trained`` maps, and the last step's as ``final``."""
    if mode not in (CASCADE, ALL):
        raise ValueError(f"sanity mode must be {CASCADE} or {ALL}, got {mode!r}")
    net = copy.deepcopy(network).eval()
    names = list(reversed(reinitialisable(net)))
    groups: Sequence[list[str]] = [[n] for n in names] if mode == CASCADE else [names]
    steps_out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for group in groups:
            for name in group:
                net.get_submodule(name).reset_parameters()
            maps = attribute(net, layer, objective.on(net), images, steps)
            steps_out.append({"reinitialised": group[-1] if mode == CASCADE else f"all {len(group)} layers",
                              **_summary(trained, maps)})
    return {"mode": mode, "seed": seed, "steps": steps_out, "final": steps_out[-1] if steps_out else None}
