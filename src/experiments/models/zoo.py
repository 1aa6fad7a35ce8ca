"""The zoo bridge: standard classifiers (torchvision's, and timm's with the optional extra) under the same switches.

"What does sigmoid do to a ResNet-18 or a MobileNet?" needs the published architectures, not look-alikes, with
the ``activation``, ``pooling`` and ``norm`` groups reaching into them. A zoo model is built by name without
weights (nothing downloads), then adapted and swapped:

* **input and output**: the first convolution the input meets takes ``data.channels`` (torchvision builds for
  RGB; timm takes ``in_chans``) and the head predicts ``data.num_classes`` (both libraries' ``num_classes``);
* **activation**: every non-linearity module (:data:`NONLINEARITIES`: ReLU, ReLU6, Hardswish, SiLU, GELU, ...)
  becomes a fresh module of the activation factory. The *gates* are not activations and stay: the Hardsigmoid
  and Sigmoid that scale channels in squeeze-and-excitation blocks (MobileNetV3, EfficientNet) compute a
  weight in [0, 1], not a feature, and swapping them would change what the block computes, not its
  non-linearity. The ReLU *inside* an SE block's bottleneck is a non-linearity and is swapped. timm models
  that take ``act_layer`` get the factory through their constructor too (so timm's own activation classes
  are covered); every module it built is then rebuilt at its measured width like the others;
* **norm**: every ``nn.BatchNorm2d`` becomes the norm factory's module for its channels. timm's fused
  norm + activation layers (``BatchNormAct2d``, a BatchNorm2d subclass with ``drop``/``act`` children) become
  ``Sequential(norm=..., drop=..., act=...)``: the same computation, the activation keeping its name;
* **pooling**: every ``nn.MaxPool2d``/``nn.AvgPool2d`` becomes the pooling option's *kind* with the layer's own
  kernel, stride and padding (:meth:`~experiments.layers.pooling.PoolingFactory.like`), so the architecture's
  shapes are kept; global (adaptive) pooling stays.

A swapped module shared by several call sites (torchvision's ResNet blocks apply one ReLU twice) stays shared.
Nothing works in place afterwards (``inplace=False`` on every module that has the flag): a swapped activation may
keep its output for its gradient (sigmoid, tanh, ReLU), which an in-place layer after it would overwrite
(MobileNetV3's classifier has ``Dropout(inplace=True)`` after what was a Hardswish).
Widths come from one probe forward pass on zeros, which also finds the stem and checks that the architecture
takes ``image_size`` images. ``keep`` names the groups whose own layers stay: ``keep=[activation, norm,
pooling]`` is the architecture as published. Maxout cannot apply (it needs k times the channels from a layer
whose width the architecture fixes): validation refuses it. A choice that finds nothing to swap is said in one
sentence (``notes``) before training, and the names of every swapped module go to ``metrics.json``
(:meth:`ZooNet.run_summary`) so the activation statistics can be read against them.

Pretrained weights come only from a local file (``model.weights``, read weights-only by
``run/checkpoints.py``); :meth:`ZooNet.load_pretrained` adapts the stem to the channel count and leaves a head of
another class count, and swapped layers of another kind, at their initialisation.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.errors import CheckpointError, ConfigError
from experiments.layers.activation import ActivationFactory
from experiments.layers.norm import NormFactory
from experiments.layers.pooling import PoolingFactory
from experiments.specs import ZOO_SWAPPABLE

#: modules that are an architecture's non-linearities (the activation group replaces them); gates are not here
NONLINEARITIES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
)
#: pooling layers the pooling group replaces (adaptive/global pooling is part of the head and stays)
POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool2d, nn.AvgPool2d)
#: what each group's swap looks for, in words, for the note when an architecture has none
_SOUGHT = {
    "activation": "non-linearity modules (it calls its activations as functions)",
    "pooling": "max- or average-pooling layers (global pooling is not swapped)",
    "norm": "BatchNorm2d layers",
}


@dataclass
class _Probe:
    """What one forward pass on zeros tells: call order, each module's input widths, the stem."""

    order: list[str] = field(default_factory=list)  # module names, first call first
    widths: dict[int, set[int]] = field(default_factory=dict)  # id(module) -> channel counts of its inputs
    stem: str | None = None  # the first Conv2d that saw the image itself


def _probe(net: nn.Module, channels: int, image_size: int, arch: str) -> _Probe:
    probe = _Probe()
    names = {id(m): name for name, m in net.named_modules() if name}

    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        name = names.get(id(module))
        x = args[0] if args else None
        if name is None or not isinstance(x, torch.Tensor) or x.dim() < 2:
            return
        if name not in probe.widths:
            probe.order.append(name)
        probe.widths.setdefault(id(module), set()).add(int(x.shape[1]))
        if probe.stem is None and isinstance(module, nn.Conv2d) and x.shape[1] == channels and x.dim() == 4:
            probe.stem = name

    handles = [m.register_forward_pre_hook(record) for m in net.modules() if m is not net]
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, channels, image_size, image_size))
    except Exception as err:  # the architecture's own shape checks (too small an image for its down-sampling)
        first = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise ConfigError("model.arch", arch, f"it cannot take {image_size}x{image_size} images ({first})",
                          "use a larger data.image_size or another architecture") from None
    finally:
        for handle in handles:
            handle.remove()
        net.train()
    return probe


def _sites(root: nn.Module, match: Callable[[nn.Module], bool]) -> dict[int, tuple[nn.Module, list[str]]]:
    """Modules that ``match``, each once with every name it is registered under (shared modules have several)."""
    found: dict[int, tuple[nn.Module, list[str]]] = {}
    for name, module in root.named_modules(remove_duplicate=False):
        if name and match(module):
            found.setdefault(id(module), (module, []))[1].append(name)
    return found


def _put(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


class ZooNet(nn.Module):
    """A standard classifier as ``self.net``, adapted to the data and swapped by the factories (module docstring).

    Subclasses say where architectures come from (:meth:`build`); everything else is shared.
    """

    #: library the architectures come from, for messages and ``metrics.json``
    source = ""

    def __init__(
        self,
        arch: str,
        in_channels: int,
        num_classes: int,
        act_layer: ActivationFactory,
        pool_layer: PoolingFactory | None = None,
        norm_layer: NormFactory | None = None,
        image_size: int = 32,
        keep: Sequence[str] = (),
        weights: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(keep) - set(ZOO_SWAPPABLE))
        if unknown:
            raise ValueError(f"keep names groups {unknown}; only {list(ZOO_SWAPPABLE)} can be kept")
        if act_layer.width_multiplier != 1 and "activation" not in keep:
            raise ConfigError("activation", act_layer.name, f"it needs {act_layer.width_multiplier}x the channels "
                              f"from the layer before it, whose width {arch} fixes",
                              "use an activation that keeps the width, such as activation=relu")
        self.arch, self.weights, self.keep = arch, weights, tuple(keep)
        factories = {"activation": act_layer, "pooling": pool_layer, "norm": norm_layer}
        swap = {g: f for g, f in factories.items() if f is not None and g not in self.keep}
        built_for: list[nn.Module] = []  # modules a library constructor built with our act_layer (timm)
        net, channels = self.build(arch, in_channels, num_classes, dict(kwargs or {}), swap.get("activation"),
                                   built_for)
        self.net = net
        probe = _probe(net, channels, image_size, arch)
        self.stem = self._adapt_stem(probe, channels, in_channels)
        self.head = self._find_head(probe, num_classes)
        #: group -> qualified names (``net.``...) of the modules now built by that group's factory
        self.replaced: dict[str, list[str]] = {}
        #: qualified names of swapped modules whose kind changed (pretrained tensors do not apply to them)
        self.rekinded: set[str] = set()
        self.notes: list[str] = []
        #: local names of timm's fused norm + activation layers, now ``Sequential(norm, drop, act)``
        self.fused: list[str] = []
        injected = {id(m) for m in built_for}
        # norm first: a fused layer's activation moves into its Sequential before the activations are named
        if "norm" in swap:
            self._swap("norm", swap["norm"], probe, lambda m: isinstance(m, nn.BatchNorm2d),
                       self._norm_maker(norm_layer),
                       same_kind=lambda old, new: isinstance(getattr(new, "norm", new), nn.BatchNorm2d))
        if "pooling" in swap:
            self._swap("pooling", swap["pooling"], probe,
                       lambda m: type(m) in POOLS and not getattr(m, "return_indices", False),
                       lambda m, width: pool_layer.like(width, m.kernel_size, m.stride, m.padding, m.ceil_mode))
        if "activation" in swap:
            self._swap("activation", swap["activation"], probe,
                       lambda m: isinstance(m, NONLINEARITIES) or id(m) in injected,
                       lambda m, width: act_layer(width))
        for module in self.net.modules():  # see the module docstring: nothing overwrites a tensor autograd keeps
            if isinstance(getattr(module, "inplace", None), bool):
                module.inplace = False
        self.pretrained: dict[str, Any] | None = None

    # -- where architectures come from ----------------------------------------------------------------------

    def build(self, arch: str, in_channels: int, num_classes: int, kwargs: dict[str, Any],
              act_layer: ActivationFactory | None, built_for: list[nn.Module]) -> tuple[nn.Module, int]:
        """(the architecture without weights for ``num_classes``, the input channels it was built for)."""
        raise NotImplementedError

    # -- adaptation -----------------------------------------------------------------------------------------

    def _adapt_stem(self, probe: _Probe, built: int, wanted: int) -> str | None:
        """Give the first convolution the input meets ``wanted`` input channels; its qualified name."""
        if probe.stem is None:
            if built != wanted:
                raise ConfigError("data.channels", wanted, f"{self.arch} does not start with a 2-D convolution, so "
                                  f"it takes {built}-channel images only", f"use data.channels={built}")
            return None
        old = self.net.get_submodule(probe.stem)
        if built != wanted:
            _put(self.net, probe.stem, nn.Conv2d(
                wanted, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation, old.groups,
                old.bias is not None, old.padding_mode))
        return f"net.{probe.stem}"

    def _find_head(self, probe: _Probe, num_classes: int) -> str | None:
        """The last layer called that produces the class scores (a Linear, or SqueezeNet's 1x1 conv)."""
        for name in reversed(probe.order):
            module = self.net.get_submodule(name)
            out = getattr(module, "out_features", getattr(module, "out_channels", None))
            if isinstance(module, (nn.Linear, nn.Conv2d)) and out == num_classes:
                return f"net.{name}"
        return None

    def _norm_maker(self, norm_layer: NormFactory) -> Callable[[nn.Module, int], nn.Module]:
        def make(old: nn.Module, width: int) -> nn.Module:
            extras = dict(old.named_children())  # timm's BatchNormAct2d: drop and act after the norm
            new = norm_layer(old.num_features)
            return nn.Sequential(OrderedDict(norm=new, **extras)) if extras else new

        return make

    def _swap(self, group: str, factory: Any, probe: _Probe, match: Callable[[nn.Module], bool],
              make: Callable[[nn.Module, int], nn.Module],
              same_kind: Callable[[nn.Module, nn.Module], bool] = lambda old, new: type(old) is type(new)) -> None:
        """Rebuild every matching module with ``make(old, width)``; one module per shared module, kept shared.
        ``same_kind``: whether a pretrained file's tensors of the old module still mean the same in the new one."""
        sites = _sites(self.net, match)
        swapped: list[str] = []
        for old, names in sites.values():
            widths = sorted(probe.widths.get(id(old)) or {1})  # a module the probe never reached: width unknown
            built = [make(old, w) for w in widths]
            if len({tuple(tuple(p.shape) for p in m.parameters()) for m in built}) > 1:
                raise ConfigError(group, factory.name, f"{self.source} {self.arch}'s net.{names[0]} is one module "
                                  f"applied to {_widths(widths)} channels, so it cannot hold per-channel parameters",
                                  f"use {'an' if group[0] in 'aeiou' else 'a'} {group} without per-channel "
                                  "parameters" + (" (e.g. activation.per_channel=false)" * (group == "activation")))
            new = built[-1]
            for name in names:
                _put(self.net, name, new)
                swapped.append(f"net.{name}")
                if not same_kind(old, new):
                    self.rekinded.add(f"net.{name}")
                if isinstance(new, nn.Sequential) and hasattr(new, "norm"):
                    self.fused.append(name)
        self.replaced[group] = sorted(swapped)
        if not swapped:
            self.notes.append(f"{group}={factory.name} does not apply to {self.source} {self.arch}: it has no "
                              f"{_SOUGHT[group]}")

    # -- pretrained weights ---------------------------------------------------------------------------------

    def load_pretrained(self, state: Mapping[str, torch.Tensor], source: str | Path) -> dict[str, Any]:
        """Load a state dict of this architecture (torchvision's or timm's key names, or this model's own).

        What may differ: the stem's input channels (its kernels are averaged over the file's channels and
        spread over ours, so a grey image meets the response the RGB weights give to its grey RGB copy), the
        head's class count (left at its initialisation) and modules the swap changed in kind (their own
        initialisation). Any other difference means another architecture: one sentence, nothing loaded.
        """
        state = {self._moved(_strip(k)): v for k, v in state.items()}
        own = self.net.state_dict()
        stem, head = _local(self.stem), _local(self.head)
        rekinded = [_local(n) for n in self.rekinded]
        load: dict[str, torch.Tensor] = {}
        kept: list[str] = []
        reshaped: list[str] = []
        for key, mine in own.items():
            if _under(key, rekinded):
                kept.append(key)
                continue
            if key not in state:
                continue
            theirs = state[key]
            if theirs.shape == mine.shape:
                load[key] = theirs
            elif stem and key == f"{stem}.weight" and theirs.dim() == 4 and theirs.shape[0] == mine.shape[0]:
                load[key] = theirs.mean(1, keepdim=True).expand(-1, mine.shape[1], -1, -1) \
                    * (theirs.shape[1] / mine.shape[1])
            elif head and _under(key, [head]):
                kept.append(key)
            else:
                reshaped.append(f"{key}: {list(theirs.shape)} there, {list(mine.shape)} here")
        missing = [k for k in own if k not in load and k not in kept]
        unexpected = [k for k in state if k not in own and not _under(k, rekinded)]
        if missing or unexpected or reshaped:
            parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                     (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if v]
            raise CheckpointError(source, f"it does not hold {self.source} {self.arch} weights: " + ", ".join(parts),
                                  f"use a state dict saved from {self.arch} (torch.save(model.state_dict(), path))",
                                  "model.weights")
        self.net.load_state_dict(load, strict=False)
        self.pretrained = {"file": str(source), "loaded": len(load), "kept_initialised": sorted(kept),
                           "stem_adapted": bool(stem) and f"{stem}.weight" in load
                           and state[f"{stem}.weight"].shape != own[f"{stem}.weight"].shape}
        return self.pretrained

    def _moved(self, key: str) -> str:
        """Where a file's key of a fused norm + activation layer now is: ``bn1.weight`` -> ``bn1.norm.weight``."""
        for site in self.fused:
            rest = key[len(site) + 1:] if key.startswith(site + ".") else None
            if rest is not None and rest.split(".")[0] not in ("norm", "drop", "act"):
                return f"{site}.norm.{rest}"
        return key

    # -- what a run records ---------------------------------------------------------------------------------

    @property
    def activation_names(self) -> list[str]:
        """The activation modules the diagnostics should read: the swapped non-linearities, one name per module
        (squeeze-and-excitation gates are not activations, whatever their type); empty when the activations were
        kept, and then the diagnostics find them by type."""
        first: dict[int, str] = {}
        for name in self.replaced.get("activation", []):
            first.setdefault(id(self.get_submodule(name)), name)
        return sorted(first.values())

    def run_summary(self) -> dict[str, Any]:
        """The ``zoo`` entry of ``metrics.json``: what was built and which modules the groups replaced."""
        return {"zoo": {"source": self.source, "arch": self.arch, "stem": self.stem, "head": self.head,
                        "kept": list(self.keep), "replaced": self.replaced, "notes": self.notes,
                        "pretrained": self.pretrained}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _widths(widths: Sequence[int]) -> str:
    return ", ".join(map(str, widths[:-1])) + f" and {widths[-1]}"


def _local(name: str | None) -> str | None:
    return name.removeprefix("net.") if name else None


def _strip(key: str) -> str:
    """A state-dict key relative to the architecture: without this project's ``network.net.`` or DDP's ``module.``."""
    for prefix in ("network.", "module.", "net."):
        key = key.removeprefix(prefix)
    return key


class TorchvisionNet(ZooNet):
    """``model=torchvision``: any classifier of ``torchvision.models`` by name (``model.arch``)."""

    source = "torchvision"

    def build(self, arch: str, in_channels: int, num_classes: int, kwargs: dict[str, Any],
              act_layer: ActivationFactory | None, built_for: list[nn.Module]) -> tuple[nn.Module, int]:
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if arch not in names:
            raise ConfigError("model.arch", arch, "torchvision has no classifier of that name",
                              "use one of torchvision.models.list_models(module=torchvision.models), e.g. "
                              "model.arch=resnet18")
        try:
            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs), 3
        except TypeError as err:
            raise ConfigError("model.kwargs", kwargs, f"the {arch} builder refuses them ({err})",
                              "drop them or use the builder's own argument names") from None


def _timm_activation(factory: ActivationFactory, built_for: list[nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    """timm calls ``act_layer(inplace=...)`` without the width; the swap rebuilds the module at its measured width."""
    module = factory(1)
    built_for.append(module)
    return module


class TimmNet(ZooNet):
    """``model=timm``: any timm model by name (``model.arch``), with ``pip install 'experiments[timm]'``."""

    source = "timm"

    def build(self, arch: str, in_channels: int, num_classes: int, kwargs: dict[str, Any],
              act_layer: ActivationFactory | None, built_for: list[nn.Module]) -> tuple[nn.Module, int]:
        try:
            import timm
        except ImportError:
            raise ConfigError("model", "timm", "the timm package is not installed",
                              "install it with pip install 'experiments[timm]'") from None
        if not timm.is_model(arch):
            raise ConfigError("model.arch", arch, "timm has no model of that name",
                              "use one of timm.list_models(), e.g. model.arch=resnet18")
        options = {"pretrained": False, "num_classes": num_classes, "in_chans": in_channels, **kwargs}
        if act_layer is not None:
            try:  # timm's act_layer: the factory reaches timm's own activation classes too
                return timm.create_model(arch, act_layer=functools.partial(_timm_activation, act_layer, built_for),
                                         **options), in_channels
            except TypeError as err:
                if "act_layer" not in str(err):
                    raise ConfigError("model.kwargs", kwargs, f"timm's {arch} refuses them ({err})",
                                      "drop them or use the model's own argument names") from None
                built_for.clear()  # this architecture takes no act_layer: module replacement alone
        try:
            return timm.create_model(arch, **options), in_channels
        except TypeError as err:
            raise ConfigError("model.kwargs", kwargs, f"timm's {arch} refuses them ({err})",
                              "drop them or use the model's own argument names") from None
