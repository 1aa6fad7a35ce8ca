"""The ordered registry of validation rules: each rule is a function registered once, under the config group it
checks, and ``validate(cfg)`` runs them all in order, stopping at the first ``ConfigError``.

Why a registry: a rule lives next to the other rules of its group (``validation/<group>.py``), and adding one is one
decorated function, with no list elsewhere to keep in step. The order is explicit and stable: groups run in the order
of :data:`GROUPS`, and the rules of one group in the order they were defined (module by module, as imported). So the
first error a user sees does not depend on which module happened to be imported first.

Adding a rule::

    from experiments.validation.checks import positive_int, require
    from experiments.validation.registry import rule

    @rule("data")
    def _check_crop(cfg: DictConfig) -> None:
        \"\"\"Why the rule exists, in one line.\"\"\"
        positive_int(cfg, "data.crop")
        require(cfg.data.crop <= cfg.data.image_size, "data.crop", cfg.data.crop,
                "a crop cannot be larger than the image", "use data.crop<=data.image_size")

    @rule("model", models=("fcn", "dilated"))  # runs only when model_option(cfg) is one of these
    def _check_decoder(cfg: DictConfig) -> None: ...

A rule takes the composed config, returns None when it is sound and raises ``ConfigError(key, value, problem, fix)``
(``checks.require`` builds it) otherwise; it stays torch-free (OmegaConf, the standard library, ``specs``/``config``;
a file check may import a torch-free reader lazily; the one exception, a standard architecture built on the meta
device, imports torch inside its rule, for those models only). A new module of rules is imported once by
``validation/__init__.py``, which is what registers its rules. A group not yet in :data:`GROUPS` is added there, at the
place in the order where its rules should run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from omegaconf import DictConfig

from experiments.specs import MODELS, model_option

#: a rule: the composed config in, ``ConfigError`` out for the first problem it finds
Check = Callable[[DictConfig], None]

#: the order in which the rules of each group run: the run's own keys, the parts it is made of, what it reads, how it is
#: trained and watched, the model, and last what it starts from (which may read another run's files)
GROUPS: tuple[str, ...] = (
    "run",  # top-level keys: seed, tags, print_config
    "optimizer",
    "loss",
    "norm",  # retired model.norm first, as it changes what every other part means
    "choices",  # every swappable part names an option of its group
    "keys",  # keys an option does not take
    "data",
    "augment",
    "activation",
    "diagnostics",
    "callbacks",
    "logger",
    "scheduler",
    "trainer",
    "model",  # model and data agree, then each model's own knobs (``models=``)
    "start",  # resume, ckpt_path, encoder_from, pretrain, probe
)


@dataclass(frozen=True)
class Rule:
    """One registered check: its group, the function, the model options it is limited to (None: every config), and
    whether it asks about this machine rather than the config (a GPU for ``trainer=gpu``)."""

    group: str
    check: Check
    models: frozenset[str] | None = None
    machine: bool = False

    @property
    def name(self) -> str:
        return f"{self.check.__module__}.{self.check.__qualname__}"

    def applies(self, option: str | None) -> bool:
        """Whether the rule runs for a config of model option ``option``."""
        return self.models is None or option in self.models


_RULES: dict[str, Rule] = {}  # by qualified name, in registration order: a rule is registered once


def rule(group: str, *, models: Iterable[str] | None = None, machine: bool = False) -> Callable[[Check], Check]:
    """Register the decorated function as a rule of ``group``; with ``models``, only for those model options; with
    ``machine``, a question about the machine the run would train on, which a command that trains nothing
    (``inspect``) skips.

    Refuses (``ValueError``, a programming mistake, not a user's) a group missing from :data:`GROUPS` and a model
    option missing from ``specs.MODELS``. The function is returned unchanged, so a rule can also be called directly
    (``pretrain`` reuses the autoencoder's)."""
    if group not in GROUPS:
        raise ValueError(f"unknown validation group {group!r}: add it to validation.registry.GROUPS where its rules "
                         "should run")
    limited = None if models is None else frozenset(models)
    unknown = sorted((limited or frozenset()) - set(MODELS))
    if unknown:
        raise ValueError(f"rule for unknown model options {unknown}: the options are {sorted(MODELS)}")

    def register(check: Check) -> Check:
        entry = Rule(group, check, limited, machine)
        _RULES.pop(entry.name, None)  # a reloaded module replaces its rules instead of adding them twice
        _RULES[entry.name] = entry
        return check

    return register


def registered(group: str | None = None) -> list[Rule]:
    """The rules in the order ``validate`` runs them (by :data:`GROUPS`, then by definition); one group's with
    ``group``."""
    position = {name: index for index, name in enumerate(GROUPS)}
    ordered = sorted(_RULES.values(), key=lambda entry: position[entry.group])  # stable: definition order kept
    return [entry for entry in ordered if group is None or entry.group == group]


def run_rules(cfg: DictConfig, machine: bool = True) -> None:
    """Every rule that applies to ``cfg``'s model, in order (without the ``machine`` rules when ``machine`` is
    False); the first ``ConfigError`` propagates."""
    option = model_option(cfg)
    for entry in registered():
        if entry.applies(option) and (machine or not entry.machine):
            entry.check(cfg)
