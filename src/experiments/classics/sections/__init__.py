"""One module per lesson, in page order. Each defines ``KEY``, ``TITLE``, ``BUDGETS``, ``plan(ctx)`` (the
commands) and ``render(ctx)`` (its part of the page); a section that times something in-process also defines
``measure(ctx)``, which runs before any training, alone on the machine.

Sections are imported on demand (:func:`load`): several import torch, which ``--help`` and a mistyped
``--only`` should not wait for.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

KEYS = ("depth", "activations", "losses", "batchnorm", "pooling", "overfitting", "upsampling", "dilation", "landscape",
        "compute")


def load(keys: Sequence[str] = KEYS) -> list[ModuleType]:
    """The section modules for ``keys``, in page order."""
    return [importlib.import_module(f"{__name__}.{key}") for key in KEYS if key in keys]
