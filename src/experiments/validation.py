"""One validation pass over the composed config, before anything heavy is imported or trained.

Every mistake becomes one sentence naming the key, the bad value and the fix, raised as
``ConfigError``; the CLI prints it without a traceback. This module imports only OmegaConf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A user's configuration mistake; its message is the whole story."""

    def __init__(self, key: str, value: Any, problem: str, fix: str) -> None:
        self.key, self.value = key, value
        super().__init__(f"{key}={_show(value)} is invalid: {problem}; {fix}.")


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _target(node: Any) -> str:
    return str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""


def model_kind(cfg: DictConfig) -> str:
    """The model class name (CNN, ResNet, FCN, ...) from its ``_target_``."""
    return _target(cfg.model).rsplit(".", 1)[-1]


def _require(cond: bool, key: str, value: Any, problem: str, fix: str) -> None:
    if not cond:
        raise ConfigError(key, value, problem, fix)


def _positive_int(cfg: DictConfig, key: str, minimum: int = 1) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        key, value, f"it must be an integer >= {minimum}", f"set {key} to a value such as {max(minimum, 1)}",
    )


def _check_common(cfg: DictConfig) -> None:
    _positive_int(cfg, "seed", 0)
    lr = OmegaConf.select(cfg, "optimizer.lr")
    _require(isinstance(lr, (int, float)) and lr > 0, "optimizer.lr", lr,
             "the learning rate must be a positive number", "use e.g. optimizer.lr=0.01")
    wd = OmegaConf.select(cfg, "optimizer.weight_decay", default=0.0)
    _require(isinstance(wd, (int, float)) and wd >= 0, "optimizer.weight_decay", wd,
             "weight decay cannot be negative", "use optimizer.weight_decay=0 or a small positive value")
    momentum = OmegaConf.select(cfg, "optimizer.momentum", default=0.0)
    _require(isinstance(momentum, (int, float)) and 0 <= momentum < 1, "optimizer.momentum", momentum,
             "momentum must lie in [0, 1)", "use e.g. optimizer.momentum=0.9")
    if OmegaConf.select(cfg, "optimizer.nesterov", default=False):
        _require(momentum > 0, "optimizer.momentum", momentum, "Nesterov momentum needs a positive momentum",
                 "use optimizer.momentum=0.9 or optimizer=sgd")
    _positive_int(cfg, "trainer.max_epochs")
    for key in ("data.batch_size", "data.train_size", "data.val_size", "data.test_size"):
        _positive_int(cfg, key)
    _positive_int(cfg, "data.image_size", 8)
    channels = OmegaConf.select(cfg, "data.channels")
    _require(channels in (1, 3), "data.channels", channels, "images are grayscale or RGB",
             "use data.channels=1 or data.channels=3")
    smoothing = OmegaConf.select(cfg, "loss.label_smoothing", default=0.0)
    _require(isinstance(smoothing, (int, float)) and 0 <= smoothing < 1, "loss.label_smoothing", smoothing,
             "label smoothing must lie in [0, 1)", "use e.g. loss.label_smoothing=0.1")
    gamma = OmegaConf.select(cfg, "loss.gamma", default=0.0)
    _require(isinstance(gamma, (int, float)) and gamma >= 0, "loss.gamma", gamma,
             "the focal exponent cannot be negative", "use e.g. loss.gamma=2")
    pct = OmegaConf.select(cfg, "scheduler.pct_start", default=0.5)
    _require(isinstance(pct, (int, float)) and 0 < pct < 1, "scheduler.pct_start", pct,
             "the warm-up fraction must lie strictly between 0 and 1", "use e.g. scheduler.pct_start=0.25")
    scheme = OmegaConf.select(cfg, "init.scheme")
    schemes = ("kaiming", "xavier", "standard", "torch")
    _require(scheme in schemes, "init.scheme", scheme, f"known schemes are {', '.join(schemes)}",
             "pick one with init=<scheme>")


def _check_activation(cfg: DictConfig) -> None:
    act = cfg.activation
    if act.get("name") == "maxout":
        pieces = act.get("pieces")
        _require(isinstance(pieces, int) and pieces >= 2, "activation.pieces", pieces,
                 "maxout takes the max over groups of pieces, so it needs at least 2",
                 "use activation.pieces=2 or more")
    if "negative_slope" in act:
        slope = act.negative_slope
        _require(isinstance(slope, (int, float)) and slope >= 0, "activation.negative_slope", slope,
                 "a negative slope below 0 flips the sign of negative inputs",
                 "use a small positive value such as activation.negative_slope=0.01")


def _check_encoder(cfg: DictConfig) -> None:
    model = cfg.model
    for key in ("stages", "convs_per_stage", "width"):
        _positive_int(cfg, f"model.{key}")
    k = model.get("kernel_size", 3)
    _require(isinstance(k, int) and k >= 1 and k % 2 == 1, "model.kernel_size", k,
             "'same' padding needs an odd kernel size", "use model.kernel_size=3 (or 1, 5, 7)")
    dropout = model.get("dropout", 0.0)
    _require(isinstance(dropout, (int, float)) and 0 <= dropout < 1, "model.dropout", dropout,
             "dropout is a probability in [0, 1)", "use e.g. model.dropout=0.5")
    hidden = model.get("hidden", [])
    _require(all(isinstance(h, int) and h >= 1 for h in hidden or []), "model.hidden", hidden,
             "hidden layer sizes must be positive integers", "use e.g. model.hidden=[128]")
    factor = cfg.pooling.get("kernel_size", 2) if cfg.pooling.get("name") != "none" else 1
    size, stages = int(cfg.data.image_size), int(model.stages)
    out = size
    for _ in range(stages):
        out //= factor
    max_stages = 0
    probe = size
    while factor > 1 and probe // factor >= 1:
        probe //= factor
        max_stages += 1
    _require(out >= 1, "model.stages", stages,
             f"{stages} pooling stages shrink a {size}x{size} image below one pixel",
             f"use at most model.stages={max_stages}, a larger data.image_size, or pooling=none")


def _check_resnet(cfg: DictConfig) -> None:
    depth = cfg.model.get("depth")
    _require(isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0, "model.depth", depth,
             "the CIFAR ResNet has depth 6n+2", "use model.depth=20, 32, 44, 56 or 110")
    _positive_int(cfg, "model.width")
    pooling = cfg.pooling.get("name")
    _require(pooling == "stride", "pooling", pooling,
             "ResNet down-samples with stride-2 convolutions (He et al. 2016), so pooling does not apply",
             "drop the pooling override (model=resnet selects pooling=stride)")


def _check_norm(cfg: DictConfig) -> None:
    norm = cfg.model.get("norm")
    if norm is not None:
        _require(norm in ("batch", "none"), "model.norm", norm, "known normalisations are batch and none",
                 "use model.norm=batch or model.norm=none")


#: extra checks per model class; a new model adds its entry here
MODEL_CHECKS: dict[str, list[Callable[[DictConfig], None]]] = {
    "CNN": [_check_encoder],
    "ResNet": [_check_resnet],
}


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first problem found; return silently when the config is sound."""
    _check_common(cfg)
    _check_activation(cfg)
    _check_norm(cfg)
    for check in MODEL_CHECKS.get(model_kind(cfg), []):
        check(cfg)
