"""A search space written in Hydra's sweep syntax, as Optuna distributions, and a trial's values back as overrides.

The syntax is Hydra's (and the one ``hydra-optuna-sweeper`` read), so experiments keep their ``params``:

* ``tag(log, interval(1e-4, 1e-1))`` -> a float on a log scale; ``interval(a, b)`` -> a uniform float;
  ``tag(int, interval(1, 9))`` (with ``log`` too) -> an integer;
* ``range(8, 65, 8)`` -> an integer (or a float with a float step) on that grid;
* ``choice(relu, tanh)`` or ``relu,tanh`` -> a categorical;
* a plain value -> the same fixed override for every trial.

Keys may carry Hydra's ``+``/``++``; a config group (``activation: choice(relu, tanh)``) works like a key. Sweep
overrides on the ``-m`` command line join the space (a command-line key wins over the same key in ``params``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.errors import ConfigError

PARAMS_KEY = "hydra.sweeper.params"
#: the key of the run seed: not a hyper-parameter (``hydra.sweeper.seeds`` repeats each trial instead)
SEED_KEY = "seed"
_PLAIN = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def hydra_value(value: Any) -> str:
    """``value`` as Hydra's override grammar reads it back unchanged (strings quoted when they need it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in ("null", "true", "false") and not _looks_numeric(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class SearchSpace:
    """The distributions to sample (by parameter name), each name's override key, and the fixed overrides."""

    distributions: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # parameter name -> override key as written (``+a.b``)
    sources: dict[str, str] = field(default_factory=dict)  # parameter name -> the expression, for error messages
    where: dict[str, str] = field(default_factory=dict)  # parameter name -> where it was written (for messages)
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's command-line overrides: the fixed ones, then one per sampled parameter."""
        return [*self.fixed, *(f"{self.keys[name]}={hydra_value(params[name])}" for name in self.distributions)]

    def sample(self) -> dict[str, Any]:
        """One value of every parameter (the low end, the first choice): a config to compose before any trial."""
        values: dict[str, Any] = {}
        for name, dist in self.distributions.items():
            values[name] = dist.choices[0] if hasattr(dist, "choices") else dist.low
        return values


def parse(params: Mapping[str, Any] | None, arguments: Sequence[str] = ()) -> SearchSpace:
    """The space of ``hydra.sweeper.params`` plus the ``-m`` command line's ``arguments``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    lines = [(f"{key}={value}", f"{PARAMS_KEY}.{key}") for key, value in flatten(params or {})]
    lines += [(arg, arg.split("=", 1)[0]) for arg in arguments]
    space = SearchSpace()
    for line, where in lines:
        try:
            override = parser.parse_override(line)
        except HydraException as err:
            raise ConfigError(where, line.split("=", 1)[-1], f"Hydra cannot parse it ({_first_line(err)})",
                              "write it as e.g. tag(log, interval(1e-4, 1e-1)), choice(8, 16, 32) or range(1, 5)"
                              ) from err
        key = override.get_key_element()
        name = override.key_or_group
        if not override.is_sweep_override():
            space.fixed.append(line)
            continue
        if name == SEED_KEY:
            raise ConfigError(where, line.split("=", 1)[-1], "a search samples configurations, not seeds",
                              "set hydra.sweeper.seeds=[0,1,2] to train every trial on each seed (objective: the mean)")
        space.distributions[name] = distribution(override.value(), where, line.split("=", 1)[-1])
        space.keys[name], space.sources[name], space.where[name] = key, line.split("=", 1)[-1], where
        space.fixed = [f for f in space.fixed if f.split("=", 1)[0].lstrip("+~") != name]
    return space


def flatten(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{optimizer: {lr: ..}}`` (what ``+hydra.sweeper.params.optimizer.lr=..`` makes) as ``optimizer.lr``."""
    items: list[tuple[str, Any]] = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            items += flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def distribution(value: Any, where: str, text: str) -> Any:
    """The Optuna distribution of one parsed sweep (see the module doc for the mapping)."""
    import optuna
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    dists = optuna.distributions
    if isinstance(value, ChoiceSweep):
        choices = list(value.list)
        if not choices or not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(where, text, "a choice must list plain values (numbers, strings, booleans, null)",
                              "write e.g. choice(8, 16, 32)")
        return dists.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step if value.step is not None else 1
        if step <= 0 or start >= stop:
            raise ConfigError(where, text, "a range must go up and hold at least one value",
                              "write e.g. range(8, 65, 8)")
        last = start + step * math.floor((stop - start - 1e-12) / step)
        if all(isinstance(v, int) for v in (start, stop, step)):
            return dists.IntDistribution(int(start), int(last), step=int(step))
        return dists.FloatDistribution(float(start), float(last), step=float(step))
    if isinstance(value, IntervalSweep):
        low, high, log = float(value.start), float(value.end), "log" in value.tags
        if not low < high or (log and low <= 0):
            raise ConfigError(where, text, "an interval needs low < high (and low > 0 on a log scale)",
                              "write e.g. tag(log, interval(1e-4, 1e-1))")
        if "int" in value.tags:
            if not (low.is_integer() and high.is_integer()):
                raise ConfigError(where, text, "an int interval needs whole-number bounds", "write e.g. "
                                  "tag(int, interval(1, 9))")
            return dists.IntDistribution(int(low), int(high), log=log)
        return dists.FloatDistribution(low, high, log=log)
    raise ConfigError(where, text, "this sweep form has no Optuna distribution",
                      "use interval(..), tag(log, interval(..)), range(..) or choice(..)")


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
