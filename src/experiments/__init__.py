"""Lightning + Hydra framework for convolutional-network ablation studies.

``from experiments import run, load`` is the Python API (:mod:`experiments.api`), loaded on first use (PEP 562's
module ``__getattr__``), not here: every command's ``--help`` imports this package, and it must answer without
importing torch or Lightning. Modules are loaded through :mod:`importlib` by name, so the package root (layer 0 of
``tests/test_architecture.py``) holds no import statement of a higher layer; it only re-exports the API.

``run`` is the subpackage ``experiments/run/`` (a run's files and bookkeeping), which is callable: calling it is
:func:`experiments.api.run` (see ``experiments/run/__init__.py`` for why the two share the name).
"""

from __future__ import annotations

import importlib
from typing import Any

#: names this package re-exports from its API module, loaded when first asked for
API = ("load", "configure", "RunResult", "LoadedRun", "ComposeError")

__all__ = ["run", *API]


def __getattr__(name: str) -> Any:
    if name == "run":  # the callable subpackage; importing it binds it here, so this runs once
        return importlib.import_module(f"{__name__}.run")
    if name in API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "run", *API])
