"""Weight initialisation schemes, scaled by the activation's gain.

Glorot & Bengio (2010) showed the "standard" U[-1/sqrt(n), 1/sqrt(n)] initialisation makes deep
sigmoid nets' gradients vanish; He et al. (2015) derived the ReLU-correct variance. Keeping the
scheme a choice lets an ablation reproduce either lesson instead of silently measuring a bad init.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_SCHEMES = ("kaiming", "xavier", "standard", "torch")

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Conv1d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)  # reset to the identity map


def _fan_in(weight: torch.Tensor) -> int:
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    return fan_in


@torch.no_grad()
def initialise(model: nn.Module, scheme: str = "kaiming", gain: float = 1.0) -> nn.Module:
    """Initialise every conv/linear weight of ``model`` in place; biases to zero, norms to identity.

    * ``kaiming``: N(0, gain^2 / fan_in) — He et al. with the activation's gain;
    * ``xavier``: U(+-gain * sqrt(6 / (fan_in + fan_out))) — Glorot & Bengio's normalised init;
    * ``standard``: U[-1/sqrt(fan_in), 1/sqrt(fan_in)] — the heuristic Glorot & Bengio criticised;
    * ``torch``: leave PyTorch's defaults.

    Modules flagged with ``keep_init = True`` (e.g. bilinear-initialised upsampling) are skipped.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {list(INIT_SCHEMES)}")
    if scheme == "torch":
        return model
    for module in model.modules():
        if getattr(module, "keep_init", False):
            continue
        if isinstance(module, _WEIGHTED):
            w = module.weight
            if scheme == "kaiming":
                nn.init.normal_(w, 0.0, gain / math.sqrt(_fan_in(w)))
            elif scheme == "xavier":
                nn.init.xavier_uniform_(w, gain=gain)
            else:
                bound = 1.0 / math.sqrt(_fan_in(w))
                nn.init.uniform_(w, -bound, bound)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model
