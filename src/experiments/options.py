"""Facts about config options that the models and the torch-free validation both need, each declared once.

Plain constants and functions, no torch, no Hydra: ``validation.py`` checks a config against the same
objects that the models build from. The options of a swappable-part group (activation, pooling, norm,
upsampling, init) are not listed here: they are the YAML files of ``conf/<group>/``
(``experiments.config.group_options``), and each layer module's registry names what it can build;
``tests/test_options.py`` proves the two agree with what validation accepts.
"""

from __future__ import annotations

from typing import NamedTuple


class ModelFacts(NamedTuple):
    """What validation needs to know of a model without importing it."""

    cls: str  # the class name that ends the ``_target_`` of conf/model/<option>.yaml
    task: str  # what it predicts: "classification" (a label per image), "segmentation" (a label per pixel) or
    # "reconstruction" (its own input: the model sets the task whatever the data, and the labels are ignored)


#: model option (conf/model/<option>.yaml) -> its facts. Adding a model is one entry here plus its YAML.
MODELS: dict[str, ModelFacts] = {
    "cnn": ModelFacts("CNN", "classification"),
    "resnet": ModelFacts("ResNet", "classification"),
    "fcn": ModelFacts("FCN", "segmentation"),
    "dilated": ModelFacts("DilatedNet", "segmentation"),
    "torchvision": ModelFacts("TorchvisionNet", "classification"),  # models/zoo.py: standard architectures
    "timm": ModelFacts("TimmNet", "classification"),  # the same with the optional timm extra
    "autoencoder": ModelFacts("Autoencoder", "reconstruction"),
}

#: models whose ``network.encoder`` is the shared ``Encoder`` (models/encoder.py): what ``encoder_from``,
#: ``pretrain`` and the linear probe work on
ENCODER_MODELS = ("cnn", "fcn", "dilated", "autoencoder")

#: task -> the validation metric that picks the best checkpoint and that ``train.main`` returns to a sweeper
#: (all maximised: optuna's direction is "maximize")
MONITORS = {"classification": "val/acc", "segmentation": "val/miou", "reconstruction": "val/psnr"}

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
