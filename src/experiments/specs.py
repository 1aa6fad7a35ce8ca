"""The one table: what each model option and each task is, and the encoder's parameters, each declared once.

Validation, the build, the run record, the report, the dashboards and the search read these objects instead of
keeping their own lists, so adding a model is one model file, one ``conf/model/<option>.yaml`` and one row of
:data:`MODELS` (``tests/test_specs.py`` proves every YAML has its row, that the row's builder is the YAML's
``_target_`` and that every YAML value is the code's default). Torch-free and Hydra-free at import: the
``--help`` and validation paths import it before torch.

The options of a swappable-part group (activation, pooling, norm, upsampling, init) are not listed here: they are
the YAML files of ``conf/<group>/`` (``experiments.config.group_options``), and each layer module's registry names
what it can build; ``tests/test_options.py`` proves the two agree with what validation accepts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

# -- the encoder ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSpec:
    """The shared ``Encoder``'s shape (models/encoder.py): stage ``i`` has ``min(width * growth**i, max_width)``
    channels and ``convs_per_stage`` conv blocks of ``kernel_size``, then one pooling step.

    Models take one of these instead of repeating six parameters; the user-facing keys stay flat
    (``model.width=8``): :meth:`split` separates them from the model's own keys. The field defaults are the
    classifier's; each model declares its own (``ENCODER`` on the model class), which its YAML must equal."""

    stages: int = 3
    convs_per_stage: int = 1
    width: int = 16  # channels of the first stage
    growth: float = 2.0  # channel multiplier per stage
    kernel_size: int = 3
    max_width: int = 512

    def stage_width(self, i: int) -> int:
        """Channels of stage ``i`` (also past ``stages``: the dilated network's unpooled stages continue the growth)."""
        return min(int(round(self.width * self.growth**i)), self.max_width)

    @property
    def widths(self) -> list[int]:
        return [self.stage_width(i) for i in range(self.stages)]

    def split(self, node: Mapping[str, Any]) -> tuple[EncoderSpec, dict[str, Any]]:
        """(this spec with the encoder keys ``node`` sets, the rest of ``node``): a flat ``model`` node -> what a
        model constructor takes. ``self`` gives the keys ``node`` leaves out (the model's declared defaults)."""
        keys = set(ENCODER_KEYS)
        spec = replace(self, **{k: v for k, v in node.items() if k in keys})
        return spec, {k: v for k, v in node.items() if k not in keys}


#: the flat ``model.*`` keys that belong to the encoder (also what must agree for encoder weights to move)
ENCODER_KEYS: tuple[str, ...] = tuple(f.name for f in fields(EncoderSpec))


# -- tasks -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """What a task learns, which LightningModule trains it and by which metric its runs are compared."""

    builder: str  # the LightningModule class path
    metric: str  # the score's short name: val/<metric> picks the best checkpoint, test/<metric> is reported
    data: str | None  # the data.task it trains on; None: any data (the labels are unused)
    direction: str = "maximize"  # of the metric, in optuna's words

    @property
    def monitor(self) -> str:
        """The validation metric that picks the best checkpoint and that ``train.main`` returns to a sweeper."""
        return f"val/{self.metric}"

    @property
    def test_metric(self) -> str:
        return f"test/{self.metric}"

    @property
    def mode(self) -> str:
        """The direction in Lightning's words (``ModelCheckpoint(mode=...)``)."""
        return "max" if self.direction == "maximize" else "min"


#: task -> its facts; a run's task is :func:`run_task`
TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec("experiments.tasks.classification.ClassificationTask", "acc", "classification"),
    "segmentation": TaskSpec("experiments.tasks.segmentation.SegmentationTask", "miou", "segmentation"),
    "reconstruction": TaskSpec("experiments.tasks.reconstruction.ReconstructionTask", "psnr", None),
}


# -- models ------------------------------------------------------------------------------------------------------

#: the groups whose choice is a layer factory or scheme handed to a model (build.FACTORY_GROUPS, plus init)
SWAPPABLE_GROUPS = ("activation", "pooling", "norm", "upsampling", "init")
#: what a model that does not read a group lacks, for the note that says the choice is unused
_LACKS = {"upsampling": "has no decoder", "pooling": "has no pooling layers"}
_ALL = frozenset(SWAPPABLE_GROUPS)
_NO_DECODER = _ALL - {"upsampling"}


@dataclass(frozen=True)
class ModelSpec:
    """What validation, the build and the report need to know of a model option without importing it."""

    builder: str  # the ``_target_`` of conf/model/<option>.yaml
    task: str  # a key of TASKS: "reconstruction" models set the task whatever the data (labels ignored)
    encoder: bool = False  # ``network.encoder`` is the shared Encoder: encoder_from, pretrain and probe work on it
    groups: frozenset[str] = _ALL  # the swappable groups it reads; another group's choice is unused
    pooling: tuple[str, ...] | None = None  # the pooling options it takes; None: any

    @property
    def cls(self) -> str:
        """The class name ending the builder's path (what an old run's ``_target_`` is matched by)."""
        return self.builder.rsplit(".", 1)[-1]


#: model option (conf/model/<option>.yaml) -> its facts. Adding a model is one row here plus its YAML and class.
MODELS: dict[str, ModelSpec] = {
    "cnn": ModelSpec("experiments.models.cnn.CNN", "classification", encoder=True, groups=_NO_DECODER),
    # down-samples with stride-2 convolutions (He et al. 2016): pooling=stride, which the YAML selects
    "resnet": ModelSpec("experiments.models.resnet.ResNet", "classification", groups=_NO_DECODER,
                        pooling=("stride",)),
    "fcn": ModelSpec("experiments.models.fcn.FCN", "segmentation", encoder=True),
    "dilated": ModelSpec("experiments.models.dilated.DilatedNet", "segmentation", encoder=True),
    # models/zoo.py: standard architectures, their layers swapped by the activation, pooling and norm groups
    "torchvision": ModelSpec("experiments.models.zoo.TorchvisionNet", "classification", groups=_NO_DECODER),
    "timm": ModelSpec("experiments.models.zoo.TimmNet", "classification", groups=_NO_DECODER),  # the timm extra
    "autoencoder": ModelSpec("experiments.models.autoencoder.Autoencoder", "reconstruction", encoder=True),
}

#: the models whose ``network.encoder`` is the shared Encoder, in table order
ENCODER_MODELS: tuple[str, ...] = tuple(option for option, spec in MODELS.items() if spec.encoder)


def unused_choices(option: str | None, choices: Mapping[str, str],
                   chosen: Collection[str] | None = None) -> dict[str, str]:
    """Group -> why its choice does nothing in this run, e.g. ``{"upsampling": "model=cnn has no decoder"}``.

    ``choices`` are the run's group choices (Hydra's record); ``chosen`` the groups the user chose (the run's
    overrides): the default choice of a group the model does not read is no news, so only those are reported
    when given. A pre-training autoencoder (``pretrain=autoencoder``) reads every group. A model outside the
    table is assumed to read every group."""
    spec = MODELS.get(option or "")
    if spec is None:
        return {}
    used = set(spec.groups)
    if choices.get("pretrain", "none") not in ("none", "null", None):
        used |= MODELS["autoencoder"].groups
    return {
        group: f"model={option} {_LACKS.get(group, f'does not read the {group} group')}"
        for group in SWAPPABLE_GROUPS
        if group in choices and group not in used and (chosen is None or group in chosen)
    }


# -- what a config says ------------------------------------------------------------------------------------------


def model_kind(cfg: DictConfig) -> str:
    """The model class name (CNN, ResNet, FCN, ...) from its ``_target_``."""
    node = cfg.get("model")
    return str(node.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(node, DictConfig) else ""


def model_option(cfg: DictConfig) -> str | None:
    """The model option (``cnn``, ``fcn``, ...) registered for the config's model class; None for another class."""
    kind = model_kind(cfg)
    return next((option for option, spec in MODELS.items() if spec.cls == kind), None)


def predicts(option: str | None) -> str:
    """The task a model option learns; a model class outside the table counts as a classifier."""
    spec = MODELS.get(option or "")
    return spec.task if spec is not None else "classification"


def run_task(cfg: DictConfig) -> str:
    """What the run learns: the model's task when the model sets it (reconstruction: its own input, whatever the
    data), else the data's (classification or segmentation, which validation makes the model agree with)."""
    task = predicts(model_option(cfg))
    if TASKS[task].data is None:
        return task
    return str(OmegaConf.select(cfg, "data.task", default="classification"))


# -- option facts of single models and keys ------------------------------------------------------------------------

#: reconstruction losses (class names ending the ``_target_`` of conf/loss/<option>.yaml): pixels in, not labels
RECONSTRUCTION_LOSSES = {"PixelMSE": "pixel_mse", "PixelBCE": "pixel_bce"}

#: the groups whose choice the zoo models (model=torchvision, model=timm) swap into a standard architecture, and
#: which ``model.keep`` may name to leave the architecture's own layers
ZOO_SWAPPABLE = ("activation", "pooling", "norm")

#: FCN variant -> how many earlier pools contribute skip scores (Long et al. 2015: FCN-32s, -16s, -8s)
FCN_VARIANTS = {"32s": 0, "16s": 1, "8s": 2}

#: the CIFAR ResNet depths of He et al. 2016, Table 6
RESNET_DEPTHS = (20, 32, 44, 56, 110)

#: ``trainer.compile`` values: off, or a ``torch.compile`` mode (experiments.speed.compile)
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
#: the ``trainer`` keys that are this project's speed settings, not ``lightning.Trainer`` arguments
#: (experiments.speed.settings reads them; build.build_trainer leaves them out of the Trainer)
SPEED_KEYS = ("threads", "packed_jobs", "compile", "channels_last", "device_data_gb")


def resnet_blocks_per_stage(depth: object) -> int | None:
    """``n`` of the CIFAR ResNet of depth ``6n + 2`` (n >= 1), or None when ``depth`` is not of that form."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        return None
    return (depth - 2) // 6
