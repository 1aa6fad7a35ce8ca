"""One validation pass over the composed config, before anything heavy is imported or trained.

Every mistake becomes one sentence naming the key, the bad value and the fix, raised as ``ConfigError``; the CLI
prints it without a traceback, and ``train`` validates before it prints the config or builds anything. OmegaConf only
(no torch): ``tests/test_architecture.py`` checks it. Two rules reach further, lazily and only where the config asks:
a standard architecture (``model=torchvision``/``timm``) is looked up and built on PyTorch's meta device
(``model.py``), and a GPU trainer looks for a GPU without importing torch (``trainer.py``).

The rules live one module per config group (``validation/<group>.py``: run, optimizer, loss, norm, choices, keys,
data, augment, activation, diagnostics, callbacks, logger, scheduler, trainer, model; ``runs.py`` also holds what a
run starts from), each a function registered once with ``@rule(group)`` (:mod:`experiments.validation.registry`,
whose docstring says how to add one); :func:`validate` runs them in the registry's order. Importing a module here is
what registers its rules, so a new module of rules is one import line below. ``checks.py`` holds the words rules
are written in (``require``, ``positive_int`` ...).
"""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.specs import model_kind, model_option, run_task  # re-exported: older callers import them here

# each group's module, imported for its @rule registrations (the order they run in is registry.GROUPS)
from experiments.validation import (  # noqa: F401
    activation,
    augment,
    callbacks,
    choices,
    diagnostics,
    keys,
    logger,
    loss,
    model,
    norm,
    optimizer,
    runs,
    scheduler,
    trainer,
)
from experiments.validation.data import check_evaluation_data
from experiments.validation.registry import registered, rule, run_rules

__all__ = ["check_evaluation_data", "model_kind", "model_option", "registered", "rule", "run_task", "validate"]


def validate(cfg: DictConfig, machine: bool = True) -> None:
    """Raise ``ConfigError`` for the first problem found; return silently when the config is sound.

    ``machine=False`` leaves out what asks about this machine rather than the config (a GPU for ``trainer=gpu``), for
    a command that trains nothing (``inspect``). Fills in one value: an image folder's ``data.num_classes``, counted
    from its class folders when left out."""
    run_rules(cfg, machine)
