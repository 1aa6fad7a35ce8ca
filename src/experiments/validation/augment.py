"""Rules of the ``augment`` group: a whole padding smaller than the image, a flip probability, non-negative jitter.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from experiments.validation.checks import is_number, positive_int, require
from experiments.validation.registry import rule

#: augment knob -> (largest value, why): each is 0 (off) or positive (data/augment.py)
_AUGMENT_LIMITS = {"flip": (1, "a probability"), "brightness": (None, "a spread"), "noise": (None, "a std"),
                   "contrast": (1, "a factor's spread around 1"), "saturation": (1, "a factor's spread around 1")}


@rule("augment")
def _check_augment(cfg: DictConfig) -> None:
    """The ``augment`` group: a whole padding in pixels, a flip probability, non-negative jitter and noise."""
    node = cfg.get("augment")
    if not isinstance(node, DictConfig):
        return
    positive_int(cfg, "augment.pad", 0)
    pad = node.get("pad", 0)
    require(pad < int(OmegaConf.select(cfg, "data.image_size", default=pad + 1)), "augment.pad", pad,
            "a crop offset of the image size or more can leave only padding", "use e.g. augment.pad=4")
    for knob, (top, what) in _AUGMENT_LIMITS.items():
        value = node.get(knob, 0)
        require(is_number(value) and value >= 0 and (top is None or value <= top), f"augment.{knob}", value,
                f"it is {what}, from 0 (off){'' if top is None else f' to {top}'}", f"use e.g. augment.{knob}=0.1")
