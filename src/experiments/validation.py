"""One validation pass over the composed config, before anything heavy is imported or trained.

Every mistake becomes one sentence naming the key, the bad value and the fix, raised as
``ConfigError``; the CLI prints it without a traceback. This module imports only OmegaConf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from experiments.config import CHOICE_KEYS, group_options
from experiments.errors import ConfigError
from experiments.options import FCN_VARIANTS, MODELS, RESNET_DEPTHS, resnet_blocks_per_stage
from experiments.run.layout import RunDir


def _target(node: Any) -> str:
    return str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""


def model_kind(cfg: DictConfig) -> str:
    """The model class name (CNN, ResNet, FCN, ...) from its ``_target_``."""
    return _target(cfg.model).rsplit(".", 1)[-1]


def model_option(cfg: DictConfig) -> str | None:
    """The model option (``cnn``, ``fcn``, ...) registered for the config's model class; None for another class."""
    kind = model_kind(cfg)
    return next((option for option, facts in MODELS.items() if facts.cls == kind), None)


def _listing(items: Iterable[str], last: str = "and") -> str:
    """``a, b and c`` (or ``a, b or c``)."""
    items = list(items)
    return ", ".join(items[:-1]) + f" {last} {items[-1]}" if len(items) > 1 else "".join(items)


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


def _check_data_source(cfg: DictConfig) -> None:
    """Datasets read from disk must be there (or be asked to download) before anything starts."""
    data = cfg.data
    image_folder = _target(data).endswith(".ImageFolderDataModule")
    if OmegaConf.is_missing(data, "num_classes") and not image_folder:
        raise ConfigError("data.num_classes", "???", "this dataset needs its number of classes",
                          "set data.num_classes to the number of classes of the dataset")
    if "root" not in data:
        return
    from pathlib import Path

    root = Path(str(data.root))
    if not data.get("download", False) and not root.is_dir():
        raise ConfigError("data.root", data.root, "the folder does not exist and nothing downloads by default",
                          "point data.root at a local copy of the dataset or add data.download=true")
    if image_folder:
        _count_class_folders(data, root)


def _count_class_folders(data: DictConfig, root: Any) -> None:
    """An image folder's classes are its sub-folders with images: a given ``data.num_classes`` must be their number,
    and a missing one becomes it, so the model (``model.num_classes`` interpolates it) is built for the classes
    found. The one value validation fills in; the run's ``config.yaml``, written after, records the count."""
    from experiments.data.folders import class_folders

    given = None if OmegaConf.is_missing(data, "num_classes") else data.get("num_classes")
    names = class_folders(root, given)
    with open_dict(data):
        data.num_classes = len(names)


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
    _require(resnet_blocks_per_stage(depth) is not None, "model.depth", depth,
             "the CIFAR ResNet has depth 6n+2", f"use model.depth={_listing(map(str, RESNET_DEPTHS), 'or')}")
    _positive_int(cfg, "model.width")
    pooling = cfg.pooling.get("name")
    _require(pooling == "stride", "pooling", pooling,
             "ResNet down-samples with stride-2 convolutions (He et al. 2016), so pooling does not apply",
             "drop the pooling override (model=resnet selects pooling=stride)")


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


# -- run-level checks: schedule, data sizes vs batch, trainer and DDP, resume --------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def _device_count(devices: Any) -> int | None:
    """Processes/devices the config asks for; None when decided at run time (auto, -1) or not a count at all."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices >= 0 else None
    if isinstance(devices, ListConfig):
        return len(devices) if all(isinstance(d, int) and d >= 0 for d in devices) else 0
    if isinstance(devices, str) and devices.replace(",", "").strip().isdigit():
        parts = [d for d in devices.split(",") if d.strip()]
        return len(parts) if "," in devices else int(devices)
    return None


def _strategy(trainer: DictConfig) -> str:
    """``ddp``, ``ddpstrategy`` (a ``_target_``), ``auto``... lower-cased, for the DDP checks."""
    strategy = trainer.get("strategy", "auto")
    if isinstance(strategy, DictConfig):
        return _target(strategy).rsplit(".", 1)[-1].lower()
    return str(strategy).lower()


def _processes(cfg: DictConfig) -> int:
    """How many training processes share the data (DDP with a known device count), else 1."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig) or not _strategy(trainer).startswith("ddp"):
        return 1
    return _device_count(trainer.get("devices")) or 1


def _hydra_mode(cfg: DictConfig) -> str | None:
    """``RUN`` or ``MULTIRUN`` under the CLI (Hydra's record), None when composed without Hydra (tests, API)."""
    node = cfg.get("hydra") if "hydra" in cfg else None
    if isinstance(node, DictConfig) and node.get("mode") is not None:
        return str(node.mode).rsplit(".", 1)[-1]
    from hydra.core.hydra_config import HydraConfig  # Hydra only, no torch: this module stays cheap

    return str(HydraConfig.get().mode).rsplit(".", 1)[-1] if HydraConfig.initialized() else None


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


def _check_data_sizes(cfg: DictConfig) -> None:
    """A batch must fit in the training split (per DDP process), and every process needs evaluation data."""
    batch, train = OmegaConf.select(cfg, "data.batch_size"), OmegaConf.select(cfg, "data.train_size")
    procs = _processes(cfg)
    if isinstance(batch, int) and isinstance(train, int):
        per = -(-train // procs)
        where = f"the {per} training images each of the {procs} DDP processes gets" if procs > 1 \
            else f"data.train_size={train}"
        _require(batch <= per, "data.batch_size", batch, f"it exceeds {where}, so each epoch is one partial batch",
                 f"use data.batch_size<={per} or a larger data.train_size")
    for split in ("val", "test"):
        n = OmegaConf.select(cfg, f"data.{split}_size")
        if procs > 1 and isinstance(n, int):
            _require(n >= procs, f"data.{split}_size", n, f"each of the {procs} DDP processes needs a {split} image",
                     f"use data.{split}_size>={procs}")
    if OmegaConf.select(cfg, "data.num_workers") is not None:
        _positive_int(cfg, "data.num_workers", 0)


def _check_resume(cfg: DictConfig) -> None:
    """``resume``/``ckpt_path`` must point at something that exists, and not both at once (see resume.py)."""
    from pathlib import Path

    resume, ckpt = cfg.get("resume", False), cfg.get("ckpt_path")
    _require(isinstance(resume, bool), "resume", resume, "resume is true or false",
             "use resume=true with hydra.run.dir=<run dir> to continue a run")
    if ckpt is not None:
        _require(not resume, "ckpt_path", ckpt, "resume=true already continues the run dir's own last checkpoint",
                 "drop ckpt_path, or drop resume=true to start from this checkpoint in a new run dir")
        path = Path(str(ckpt))
        _require(path.is_file(), "ckpt_path", ckpt, "no such file" if not path.exists() else "it is not a file",
                 "point ckpt_path at a checkpoint such as <run dir>/checkpoints/last.ckpt")
    if not resume or OmegaConf.select(cfg, "run_dir") is None:
        return
    run_dir = Path(str(cfg.run_dir))
    started = RunDir(run_dir).has_started()
    if _hydra_mode(cfg) == "MULTIRUN":  # a job that never ran starts now; the sweep itself must exist
        sweep = run_dir.parent
        earlier = any(p.is_file() for p in sweep.glob("*/metrics.json"))
        _require(earlier, "resume", "true", f"the sweep dir {sweep} holds no earlier job to continue",
                 "set hydra.sweep.dir to the sweep to re-launch")
        return
    _require(started, "resume", "true", f"the run dir {run_dir} holds no earlier run (no config.yaml or "
             "checkpoints/last.ckpt)", "point hydra.run.dir at the run to continue, e.g. python -m experiments.train "
             "resume=true hydra.run.dir=outputs/runs/<date>/<time>")


# -- segmentation: model/data agreement, FCN and dilated options, upsampling ---------------------------------


def _predicts(option: str | None) -> str:
    """What a model option predicts; a model class outside the registry counts as a classifier."""
    return MODELS[option].task if option in MODELS else "classification"


def _check_task(cfg: DictConfig) -> None:
    """A per-pixel model needs per-pixel masks and a per-image model needs labels; unpool needs a decoder."""
    task = OmegaConf.select(cfg, "data.task", default="classification")
    registered = model_option(cfg)
    option = registered or model_kind(cfg).lower()
    if _predicts(registered) == "segmentation":
        _require(task == "segmentation", "data.task", task,
                 f"model={option} predicts a class for every pixel and needs per-pixel masks",
                 f"use data=shapes_seg (model={option} picks it when no data= is given)")
        return
    _require(task != "segmentation", "data.task", task,
             f"model={option} predicts one class per image, not a labelled map",
             f"use {' or '.join(f'model={o}' for o in MODELS if _predicts(o) == 'segmentation')} for segmentation, "
             "or data=shapes for classification")
    up = OmegaConf.select(cfg, "upsampling.name", default=None)
    _require(up != "unpool", "upsampling", up, f"model={option} has no decoder, so there are no pools to undo",
             "drop the upsampling override, or use model=fcn or model=dilated with pooling=max")


def _check_unpool(cfg: DictConfig) -> None:
    """Max-unpooling puts values back where a max-pool found its maxima, so it needs those max-pools."""
    if OmegaConf.select(cfg, "upsampling.name", default=None) != "unpool":
        return
    pooling = cfg.pooling.get("name")
    _require(pooling == "max", "pooling", pooling,
             "upsampling=unpool needs the argmax indices that only max pooling records",
             "use pooling=max, or another upsampling such as upsampling=bilinear")
    k = cfg.pooling.get("kernel_size", 2)
    _require(isinstance(k, int) and k >= 2, "pooling.kernel_size", k,
             "a 1x1 max-pool does not down-sample, so there is nothing for upsampling=unpool to undo",
             "use pooling.kernel_size=2")


def _check_fcn(cfg: DictConfig) -> None:
    model = cfg.model
    variant = model.get("variant", "8s")
    _require(variant in FCN_VARIANTS, "model.variant", variant,
             f"FCN variants are {_listing(FCN_VARIANTS)} (Long et al. 2015)", "use model.variant=8s")
    stages, skips = model.get("stages"), FCN_VARIANTS[variant]
    _require(stages > skips, "model.variant", variant,
             f"FCN-{variant} fuses the scores of {skips} earlier pools, so it needs model.stages>={skips + 1}",
             f"use model.stages={skips + 1} or more, or a variant with fewer skips such as model.variant=32s")
    _positive_int(cfg, "model.fc_width")
    k = model.get("fc_kernel", 3)
    _require(isinstance(k, int) and k >= 1 and k % 2 == 1, "model.fc_kernel", k,
             "the convolutionalised fc6 keeps the map size only with an odd kernel",
             "use model.fc_kernel=3 (or 1, 5, 7)")


def _check_dilated(cfg: DictConfig) -> None:
    model = cfg.model
    _positive_int(cfg, "model.context_width")
    _positive_int(cfg, "model.dilated_stages", 0)
    dilations = model.get("dilations")
    ok = isinstance(dilations, ListConfig) and len(dilations) > 0 and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dilations
    )
    _require(ok, "model.dilations", dilations, "the context module needs a non-empty list of positive dilations",
             "use e.g. model.dilations=[1,1,2,4,8,16,1] (Yu & Koltun 2016)")


#: extra checks per model option (experiments.options.MODELS); a new model with knobs to check adds its entry
MODEL_CHECKS: dict[str, list[Callable[[DictConfig], None]]] = {
    "cnn": [_check_encoder],
    "resnet": [_check_resnet],
    "fcn": [_check_encoder, _check_fcn, _check_unpool],
    "dilated": [_check_encoder, _check_dilated, _check_unpool],
}


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first problem found; return silently when the config is sound.

    Fills in one value: an image folder's ``data.num_classes``, counted from its class folders when left out."""
    _check_common(cfg)
    _check_norm(cfg)
    _check_choices(cfg)
    _check_data_source(cfg)
    _check_activation(cfg)
    _check_diagnostics(cfg)
    _check_scheduler(cfg)
    _check_trainer(cfg)
    _check_data_sizes(cfg)
    _check_resume(cfg)
    _check_task(cfg)
    for check in MODEL_CHECKS.get(model_option(cfg), []):
        check(cfg)
