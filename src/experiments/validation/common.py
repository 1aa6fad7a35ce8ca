"""Checks of the run's knobs: seed, optimiser and loss numbers, group choices, activation, norm (and its retired
key), diagnostics, schedule, trainer and the speed settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.config import CHOICE_KEYS, group_options
from experiments.errors import ConfigError
from experiments.options import (
    COMPILE_MODES,
)
from experiments.validation.rules import (
    _device_count,
    _hydra_mode,
    _listing,
    _number,
    _positive_int,
    _require,
    _strategy,
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
    _positive_int(cfg, "trainer.max_epochs", 0)  # 0: no training, the network is tested (and probed) as it starts
    for key in ("data.batch_size", "data.train_size", "data.val_size", "data.test_size"):
        _positive_int(cfg, key)
    _positive_int(cfg, "data.image_size", 8)
    channels = OmegaConf.select(cfg, "data.channels")
    _require(channels in (1, 3), "data.channels", channels, "images are grayscale or RGB",
             "use data.channels=1 or data.channels=3")
    _check_test_perturbation(cfg)
    smoothing = OmegaConf.select(cfg, "loss.label_smoothing", default=0.0)
    _require(isinstance(smoothing, (int, float)) and 0 <= smoothing < 1, "loss.label_smoothing", smoothing,
             "label smoothing must lie in [0, 1)", "use e.g. loss.label_smoothing=0.1")
    gamma = OmegaConf.select(cfg, "loss.gamma", default=0.0)
    _require(isinstance(gamma, (int, float)) and gamma >= 0, "loss.gamma", gamma,
             "the focal exponent cannot be negative", "use e.g. loss.gamma=2")
    pct = OmegaConf.select(cfg, "scheduler.pct_start", default=0.5)
    _require(isinstance(pct, (int, float)) and 0 < pct < 1, "scheduler.pct_start", pct,
             "the warm-up fraction must lie strictly between 0 and 1", "use e.g. scheduler.pct_start=0.25")


def _check_test_perturbation(cfg: DictConfig) -> None:
    """``data.test_shift`` (pixels) and ``data.test_noise`` (a standard deviation) of the shapes test split."""
    _positive_int(cfg, "data.test_shift", 0)
    noise = OmegaConf.select(cfg, "data.test_noise", default=0.0)
    _require(_number(noise) and noise >= 0, "data.test_noise", noise, "it is the standard deviation of extra pixel "
             "noise on the test images", "use e.g. data.test_noise=0.1 (images lie in [0, 1]), or 0 for none")


def _check_choices(cfg: DictConfig) -> None:
    """Each swappable part names an option of its group, the YAML files of conf/<group>/ (even when set by key)."""
    for group, key in CHOICE_KEYS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        known = group_options(group)
        value = node.get(key)
        _require(value in known, f"{group}.{key}", value, f"the {group} options are {_listing(known)}",
                 f"pick one with {group}=<option>")


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


#: keys that moved -> the config group that replaced them
RETIRED_KEYS = {"model.norm": "norm"}


def _retired(key: str, value: Any) -> None:
    group = RETIRED_KEYS[key]
    known = group_options(group)
    option = value if all(v in known for v in str(value).split(",")) else "<option>"
    raise ConfigError(key, value, f"{key} moved to the {group} config group, one choice for every model",
                      f"use {group}={option}")


def check_overrides(overrides: Sequence[str]) -> None:
    """Name the new way for a command-line override of a retired key, before Hydra composes.

    Hydra itself would only say that the key is not in the config, without naming what replaced it.
    """
    for override in overrides:
        key, sep, value = str(override).lstrip("+~").partition("=")
        if sep and key in RETIRED_KEYS:
            _retired(key, value)


def _check_norm(cfg: DictConfig) -> None:
    if isinstance(cfg.get("model"), DictConfig) and "norm" in cfg.model:  # an old config file or experiment
        _retired("model.norm", cfg.model.norm)
    _positive_int(cfg, "norm.groups")


#: diagnostics knobs (conf/diagnostics) -> smallest allowed integer
_DIAGNOSTIC_INTS = {"interval": 1, "every_n_steps": 1, "figure_every_n_epochs": 0, "max_histogram_values": 1}


def _check_diagnostics(cfg: DictConfig) -> None:
    """Intervals are whole steps >= 1 (0 would divide by zero); the divergence threshold must be positive."""
    for name, node in (cfg.get("diagnostics") or {}).items():
        if not isinstance(node, DictConfig):
            continue
        for knob, minimum in _DIAGNOSTIC_INTS.items():
            if knob in node:
                _positive_int(cfg, f"diagnostics.{name}.{knob}", minimum)
        if node.get("max_grad_norm") is not None:
            limit = node.max_grad_norm
            _require(isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0,
                     f"diagnostics.{name}.max_grad_norm", limit, "the exploding-gradient threshold must be positive",
                     f"use e.g. diagnostics.{name}.max_grad_norm=1e4, or null to stop on non-finite values only")


def _check_scheduler(cfg: DictConfig) -> None:
    """Milestones are fractions of the run; factors keep the rate positive and below its peak."""
    sched = cfg.get("scheduler")
    if not isinstance(sched, DictConfig):
        return
    if "milestones" in sched:
        m = list(sched.milestones) if isinstance(sched.milestones, ListConfig) else None
        ok = bool(m) and all(_number(f) and 0 < f < 1 for f in m) and all(m[i] < m[i + 1] for i in range(len(m) - 1))
        _require(ok, "scheduler.milestones", sched.milestones,
                 "milestones are fractions of the run strictly between 0 and 1, in increasing order",
                 "use e.g. scheduler.milestones=[0.5,0.75]")
    if "gamma" in sched:
        g = sched.gamma
        _require(_number(g) and 0 < g <= 1, "scheduler.gamma", g,
                 "the rate is multiplied by gamma at each milestone, so it must lie in (0, 1]",
                 "use e.g. scheduler.gamma=0.1")
    if "eta_min" in sched:
        eta, lr = sched.eta_min, OmegaConf.select(cfg, "optimizer.lr")
        _require(_number(eta) and 0 <= eta < lr, "scheduler.eta_min", eta,
                 f"the cosine floor must lie in [0, optimizer.lr={lr})", "use e.g. scheduler.eta_min=0")
    if "div_factor" in sched:
        d = sched.div_factor
        _require(_number(d) and d >= 1, "scheduler.div_factor", d,
                 "one-cycle warms up from optimizer.lr/div_factor, so a factor below 1 would start above the peak",
                 "use e.g. scheduler.div_factor=25")


_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


_PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")


def _check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    accel = trainer.get("accelerator", "auto")
    _require(accel in _ACCELERATORS, "trainer.accelerator", accel, f"known accelerators are {', '.join(_ACCELERATORS)}",
             "use trainer.accelerator=auto, or pick trainer=cpu or trainer=gpu")
    devices = trainer.get("devices", "auto")
    count = _device_count(devices)
    _require(devices in ("auto", -1, "-1") or (count is not None and count >= 1), "trainer.devices", devices,
             "devices is a positive count, -1 or auto for all, or a list of device indices",
             "use e.g. trainer.devices=1")
    precision = str(trainer.get("precision", "32-true"))
    _require(precision in _PRECISIONS, "trainer.precision", precision, f"known precisions are {', '.join(_PRECISIONS)}",
             "use trainer.precision=32-true (CPU) or bf16-mixed (GPU)")
    if accel == "cpu":
        _require(precision not in ("16-mixed", "16"), "trainer.precision", precision,
                 "Lightning runs float16 mixed precision on GPUs only", "use trainer.precision=bf16-mixed or 32-true")
    clip = trainer.get("gradient_clip_val")
    _require(clip is None or (_number(clip) and clip >= 0), "trainer.gradient_clip_val", clip,
             "a gradient norm limit cannot be negative", "use e.g. trainer.gradient_clip_val=1.0, or null for none")
    _positive_int(cfg, "trainer.log_every_n_steps")
    strategy = _strategy(trainer)
    if not strategy.startswith("ddp"):
        return
    _require(count is None or count >= 2, "trainer.devices", devices,
             "DDP starts one process per device, so one device only adds the start-up cost",
             "use trainer.devices=2 or more, or trainer=cpu / trainer=gpu for a single device")
    backend = OmegaConf.select(trainer, "strategy.process_group_backend", default=None) \
        if isinstance(trainer.get("strategy"), DictConfig) else None
    if accel == "cpu":
        _require(backend != "nccl", "trainer.strategy.process_group_backend", backend, "NCCL runs on GPUs only",
                 "use trainer.strategy.process_group_backend=gloo (as trainer=ddp_cpu does)")
    _require(_hydra_mode(cfg) != "MULTIRUN", "trainer.strategy", strategy,
             "Lightning starts the other DDP processes by re-running the command line, which inside a -m sweep "
             "would re-launch the whole sweep", "run each DDP configuration as a single run, or sweep with "
             "trainer=cpu / trainer=gpu")


def _check_speed(cfg: DictConfig) -> None:
    """The speed settings of ``conf/trainer`` (experiments.speed): threads, packed jobs, compile, layout, data size."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    for key in ("threads", "packed_jobs"):
        value = trainer.get(key, "auto")
        _require(value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                 f"trainer.{key}", value, "it is auto or a whole number >= 1", f"use trainer.{key}=auto or e.g. 2")
    mode = trainer.get("compile", "off")
    _require(mode is False or mode in COMPILE_MODES, "trainer.compile", mode,
             f"the choices are {_listing(COMPILE_MODES, 'or')}", "use e.g. trainer.compile=reduce-overhead")
    layout = trainer.get("channels_last", False)
    _require(isinstance(layout, bool), "trainer.channels_last", layout, "it is true or false",
             "use trainer.channels_last=true (NHWC convolutions) or false")
    budget = trainer.get("device_data_gb", 4.0)
    _require(_number(budget) and budget >= 0, "trainer.device_data_gb", budget,
             "it is the gigabytes of data allowed on the GPU", "use e.g. trainer.device_data_gb=4, or 0 to stream")
