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
    task: str  # what it predicts: "classification" (a label per image) or "segmentation" (a label per pixel)


#: model option (conf/model/<option>.yaml) -> its facts. Adding a model is one entry here plus its YAML.
MODELS: dict[str, ModelFacts] = {
    "cnn": ModelFacts("CNN", "classification"),
    "resnet": ModelFacts("ResNet", "classification"),
    "fcn": ModelFacts("FCN", "segmentation"),
    "dilated": ModelFacts("DilatedNet", "segmentation"),
}

#: FCN variant -> how many earlier pools contribute skip scores (Long et al. 2015: FCN-32s, -16s, -8s)
FCN_VARIANTS = {"32s": 0, "16s": 1, "8s": 2}

#: the CIFAR ResNet depths of He et al. 2016, Table 6
RESNET_DEPTHS = (20, 32, 44, 56, 110)


def resnet_blocks_per_stage(depth: object) -> int | None:
    """``n`` of the CIFAR ResNet of depth ``6n + 2`` (n >= 1), or None when ``depth`` is not of that form."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        return None
    return (depth - 2) // 6
