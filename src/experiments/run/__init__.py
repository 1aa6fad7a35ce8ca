"""A run's lifecycle: its directory and record, resume, exact mid-epoch state, signals, checkpoints, sweep status.

This package is also the Python API's ``run`` (``from experiments import run; run(["model=fcn"])``): Python binds
``experiments.run`` to this subpackage whenever anything imports it, so rather than fight over the name the
subpackage itself is callable, and calling it trains (:func:`experiments.api.run`). Its modules are reached as
always (``experiments.run.checkpoints``, Hydra ``_target_`` paths). The API is loaded by name on the first call, so
nothing here imports a higher layer (``tests/test_architecture.py``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _CallableRun(types.ModuleType):
    """This subpackage's module type: calling the module is calling :func:`experiments.api.run`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    @property
    def __wrapped__(self) -> Any:  # inspect.signature and IPython's ``run?`` follow it to the API function
        return importlib.import_module("experiments.api").run


sys.modules[__name__].__class__ = _CallableRun
