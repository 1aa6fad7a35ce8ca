"""``hydra/sweeper=seeds``: run a grid on a few seeds, then add seeds to the comparisons that are not resolved yet.

Why: three seeds resolve a large difference and leave a small one open; training every arm on ten seeds "to be
safe" spends most of the budget on comparisons that were clear at three. This sweeper spends seeds where the
paired interval still includes 0, and stops by a rule whose error rate stays honest although it looks at the data
several times.

What one invocation does:

1. expands the grid (``hydra.sweeper.params`` and the ``-m`` command line, Hydra's sweep syntax: ``a=x,y``,
   ``range(..)``, ``choice(..)``; a ``seed=`` override is refused, the sweeper chooses the seeds) into arms, picks
   the baseline arm (``baseline``: ``{pooling:max}``, or ``'pooling=max'`` quoted as the report's ``--baseline``
   names it; default: the grid's first arm)
   and the metric (``metric``, default the task's test metric: ``test/acc``, ``test/miou``, ``test/psnr``); any
   mistake is one sentence and exit 2 before a job starts;
2. plans the looks: ``start``, ``start + step``, ... seeds per arm, the cap ``max_seeds`` last
   (:func:`~experiments.reporting.planning.look_sizes`);
3. at each look, trains the missing seeds (``first_seed``, ``first_seed + 1``, ...) of the baseline and of every
   arm whose comparison is still open, in one batch through the configured launcher (``hydra/launcher=packed``
   runs them in parallel), reads every job's ``metrics.json`` (:func:`~experiments.reporting.runs.load_run`) and
   tests each open arm against the baseline, paired by seed (:func:`~experiments.reporting.inference.paired_test`);
4. stops a comparison at the first look whose paired t interval at level ``1 − α/(m·L)`` excludes 0 (``m`` arms
   besides the baseline, ``L`` planned looks): **the Bonferroni group-sequential boundary** (Jennison & Turnbull
   2000, *Group Sequential Methods with Applications to Clinical Trials*;
   :class:`~experiments.reporting.planning.SequentialRule`), which keeps the probability that any comparison
   without a true difference is ever declared resolved at most ``α``, over every comparison and every look;
5. ends when every comparison is resolved or the cap is reached, printing and writing ``seed_sweep.json`` in the
   sweep dir: the rule, its reference and level, and per arm each look's n, difference, interval and p, and
   whether it resolved (at which n) or hit the cap. The file is rewritten after every look.

Job directories are numbered in launch order (``<sweep dir>/<job>``, Hydra's default subdir), so
``python -m experiments.report <sweep dir> --baseline <arm>`` reports the sweep as any grid: arms that stopped
early are paired with the baseline on their own seeds.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

#: exit status of a bad sweep configuration (as every ConfigError of the project)
EXIT_BAD_CONFIG = 2
#: written to the sweep dir after every look
RECORD_FILE = "seed_sweep.json"
SEED_KEY = "seed"


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


class Design:
    """Everything fixed before the first job: the arms, the baseline, the metric, the looks and the rule.

    A plain class, not a dataclass: Hydra's plugin scan executes this module without registering it in
    ``sys.modules``, where ``@dataclass`` (with postponed annotations) fails and would break every run.
    """

    def __init__(self, *, arms: list[tuple[str, ...]], fixed: list[str], baseline: int, metric: str,
                 looks: list[int], seeds: list[int], rule: Any) -> None:
        self.arms = arms  # each arm's swept overrides
        self.fixed = fixed  # overrides every job gets
        self.baseline = baseline  # index into arms
        self.metric = metric
        self.looks = looks  # seeds per arm at each look
        self.seeds = seeds  # the seeds, in the order they are added
        self.rule = rule  # experiments.reporting.planning.SequentialRule

    def name(self, index: int) -> str:
        from experiments.reporting.comparison import cli_name

        return cli_name(self.arms[index])


class SeedSweeper(Sweeper):
    """The sweeper; its arguments are the keys of ``conf/hydra/sweeper/seeds.yaml``."""

    def __init__(self, start: int = 3, step: int = 2, max_seeds: int = 10, first_seed: int = 0,
                 baseline: Any = None, metric: str | None = None, alpha: float = 0.05,
                 params: Any = None) -> None:
        self.start, self.step, self.max_seeds, self.first_seed = start, step, max_seeds, first_seed
        self.baseline, self.metric, self.alpha = _plain(baseline), metric, alpha
        self.params = dict(_plain(params) or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from experiments.errors import ConfigError

        try:
            design = self.design(arguments)
        except ConfigError as err:  # a bad sweep: one sentence, exit 2, no job started
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_BAD_CONFIG)
        return _SeedLoop(self, design).run()

    # -- step 1 and 2: the design -------------------------------------------------------------------------------

    def design(self, arguments: Sequence[str]) -> Design:
        """Arms, baseline, metric, looks and rule, every option checked (ConfigError on a mistake)."""
        from experiments.errors import ConfigError
        from experiments.reporting.comparison import find_arm
        from experiments.reporting.planning import SequentialRule, arm_spec, look_sizes

        start = _whole(self.start, "hydra.sweeper.start", 2, "a paired t interval needs two seeds")
        step = _whole(self.step, "hydra.sweeper.step", 1, "each look adds at least one seed")
        cap = _whole(self.max_seeds, "hydra.sweeper.max_seeds", start, "the cap cannot be below the first look's "
                     f"{start} seeds (hydra.sweeper.start)")
        first = _whole(self.first_seed, "hydra.sweeper.first_seed", 0, "seeds are whole numbers from 0")
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ConfigError("hydra.sweeper.alpha", alpha, "it is the error rate over every comparison and look",
                              "give a number between 0 and 1, e.g. 0.05")
        arms, fixed = self._grid(arguments)
        if len(arms) < 2:
            raise ConfigError("hydra.sweeper.params", self.params or "{}", "the grid has one arm, so there is "
                              "nothing to compare and no seed to add",
                              "sweep a key over two values or more, e.g. activation=relu,sigmoid")
        baseline = 0 if self.baseline is None else find_arm(arm_spec(self.baseline), arms, fixed,
                                                            option="hydra.sweeper.baseline")
        metric = self._metric(fixed + list(arms[baseline]) + [f"{SEED_KEY}={first}"])
        looks = look_sizes(start, step, cap)
        rule = SequentialRule(alpha=float(alpha), comparisons=len(arms) - 1, looks=len(looks))
        return Design(arms=arms, fixed=fixed, baseline=baseline, metric=metric, looks=looks,
                      seeds=list(range(first, first + cap)), rule=rule)

    def _grid(self, arguments: Sequence[str]) -> tuple[list[tuple[str, ...]], list[str]]:
        """The arms (the product of the swept keys' values, in the order given) and the fixed overrides."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from experiments.errors import ConfigError

        assert self.hydra_context is not None
        texts = [f"{key}={value}" for key, value in self.params.items()] + list(arguments)
        try:
            parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(texts)
        except Exception as err:  # noqa: BLE001 - Hydra's grammar errors: one line of theirs in our sentence
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError("hydra.sweeper.params", " ".join(texts), f"Hydra cannot parse it ({first})",
                              "write the grid as key=a,b or key=range(0,3)") from err
        swept: dict[str, list[str]] = {}
        fixed: dict[str, str] = {}
        for override in parsed:
            key = override.get_key_element()
            typed = str(override.input_line or "").partition("=")[2]  # the value as typed (a sweep has no str())
            if override.key_or_group == SEED_KEY:
                raise ConfigError(SEED_KEY, typed, "hydra/sweeper=seeds chooses "
                                  "every job's seed", "drop it and set hydra.sweeper.first_seed, start, step and "
                                  "max_seeds instead")
            if override.is_sweep_override():
                if not override.is_discrete_sweep():
                    raise ConfigError(key, typed, "a seed sweep runs a grid and "
                                      "cannot sample an interval", "list the values (key=a,b,c) or search it with "
                                      "hydra/sweeper=optuna")
                swept[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
                fixed.pop(key, None)
            else:
                fixed[key] = f"{key}={override.get_value_element_as_str()}"
                swept.pop(key, None)
        arms = [tuple(arm) for arm in itertools.product(*swept.values())] if swept else [()]
        return arms, list(fixed.values())

    def _metric(self, overrides: list[str]) -> str:
        """``metric``, or the test metric of the task the baseline's first job trains (its config composed)."""
        from experiments.errors import ConfigError

        assert self.hydra_context is not None and self.config is not None
        try:
            sample = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except Exception as err:  # noqa: BLE001 - Hydra's loader raises AssertionErrors too
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError("hydra.sweeper", " ".join(overrides), f"a job's config cannot be composed ({first})",
                              "correct the override it names") from err
        if self.metric:
            return str(self.metric)
        from experiments.search.objective import task_objective
        from experiments.specs import TASKS

        task = task_objective(sample)[0]
        return TASKS[task].test_metric


class _SeedLoop:
    """Steps 3 to 5 of the module doc: launch, read, test, stop or add seeds."""

    def __init__(self, sweeper: SeedSweeper, design: Design) -> None:
        assert sweeper.config is not None
        self.sweeper, self.design = sweeper, design
        self.sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
        self.runs: dict[int, list[Any]] = {i: [] for i in range(len(design.arms))}
        self.trained = {i: 0 for i in range(len(design.arms))}
        self.open = [i for i in range(len(design.arms)) if i != design.baseline]
        self.history: dict[int, list[dict[str, Any]]] = {i: [] for i in self.open}
        self.resolved_at: dict[int, int] = {}
        self.stopped = False  # a look without a completed job ended the sweep
        self.finished = False  # no look is coming
        self.job_index = 0

    def run(self) -> list[Any]:
        design, rule = self.design, self.design.rule
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.sweeper.config, self.sweep_dir / "multirun.yaml")  # as Hydra's basic sweeper: run names
        base = design.name(design.baseline)
        print(f"seeds: {len(design.arms)} arms, looks at {', '.join(map(str, design.looks))} seeds per arm; "
              f"{design.metric} of each arm − baseline {base}, paired by seed; a comparison stops once its paired t "
              f"interval at {_percent(rule.confidence)} excludes 0 (α = {rule.alpha:g} over {rule.comparisons} "
              f"comparisons × {rule.looks} looks: Bonferroni group-sequential boundary, Jennison & Turnbull 2000)",
              flush=True)
        returns: list[Any] = []
        for look, size in enumerate(design.looks):
            if not self.open:
                break
            results, completed = self._launch(size)
            returns.append(results)
            if not completed:
                print(f"error: no job of look {look + 1} completed; the seed sweep stops (the failed jobs are listed "
                      "below)", file=sys.stderr, flush=True)
                self.stopped = True
                self._write()
                break
            self._look(look, size)
            self._write()
        self._finish()
        return returns

    def _launch(self, size: int) -> tuple[list[Any], bool]:
        """Train the missing seeds up to ``size`` of the baseline and every open arm; True when a job completed."""
        design = self.design
        batch: list[list[str]] = []
        where: list[tuple[int, int]] = []
        for index in sorted({*self.open, design.baseline}):
            for seed in design.seeds[self.trained[index]:size]:
                batch.append([*design.fixed, *design.arms[index], f"{SEED_KEY}={seed}"])
                where.append((index, seed))
            self.trained[index] = size
        if not batch:
            return [], True
        self.sweeper.validate_batch_is_legal(batch)
        results = list(self.sweeper.launcher.launch(batch, initial_job_idx=self.job_index))
        completed = False
        for number, ((index, seed), result) in enumerate(zip(where, results, strict=True), start=self.job_index):
            run = self._load(result, number, seed)
            completed |= run.completed
            self.runs[index].append(run)
        self.job_index += len(batch)
        return results, completed

    def _load(self, result: Any, number: int, seed: int) -> Any:
        from experiments.reporting.runs import load_run

        output = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir", default=None) \
            if OmegaConf.is_config(getattr(result, "hydra_cfg", None)) else None
        run = load_run(Path(str(output)) if output else self.sweep_dir / str(number))
        if run.seed is None:
            run.seed = seed
        return run

    def _look(self, look: int, size: int) -> None:
        """Test every open arm against the baseline; close those whose interval excludes 0."""
        from experiments.reporting.inference import paired_test
        from experiments.reporting.planning import seed_differences

        design, rule = self.design, self.design.rule
        for index in list(self.open):
            diffs = seed_differences(self.runs[index], self.runs[design.baseline], design.metric)
            test = paired_test(diffs, confidence=rule.confidence)
            resolved = rule.resolves(test.p_value)
            self.history[index].append({"look": look + 1, "seeds": size, "pairs": test.n, "mean": test.mean,
                                        "low": test.low, "high": test.high, "p": test.p_value, "resolved": resolved})
            print(f"seeds: look {look + 1} of {rule.looks} ({size} seeds): {design.name(index)} − "
                  f"{design.name(design.baseline)}: {_describe(test, rule.confidence)} -> "
                  f"{'resolved' if resolved else 'open'}", flush=True)
            if resolved:
                self.resolved_at[index] = test.n
                self.open.remove(index)

    def _status(self, index: int) -> str:
        if index in self.resolved_at:
            return "resolved"
        return "stopped" if self.stopped else "cap"

    def _write(self) -> None:
        design, rule = self.design, self.design.rule
        from experiments.reporting.planning import SEQUENTIAL_REFERENCE, SEQUENTIAL_RULE

        arms = {}
        for index, key in enumerate(design.arms):
            seeds = sorted(run.seed for run in self.runs[index] if run.completed and run.seed is not None)
            entry: dict[str, Any] = {"overrides": list(key), "seeds": seeds}
            if index == design.baseline:
                entry["role"] = "baseline"
            else:
                status = "open" if index in self.open and not self.finished else self._status(index)
                entry.update(role="arm", status=status, resolved_at_pairs=self.resolved_at.get(index),
                             looks=self.history[index])
            arms[design.name(index)] = entry
        record = {"sweeper": "seeds", "rule": SEQUENTIAL_RULE, "reference": SEQUENTIAL_REFERENCE,
                  "alpha": rule.alpha, "comparisons": rule.comparisons, "looks": design.looks,
                  "level": rule.level, "confidence": rule.confidence, "test": "paired t (two-sided)",
                  "metric": design.metric, "baseline": design.name(design.baseline), "fixed": design.fixed,
                  "finished": self.finished, "arms": arms}
        (self.sweep_dir / RECORD_FILE).write_text(json.dumps(_finite(record), indent=2) + "\n")

    def _finish(self) -> None:
        self.finished = True
        self._write()
        design = self.design
        base = design.name(design.baseline)
        for index, entries in self.history.items():
            last = entries[-1] if entries else None
            name = f"{design.name(index)} − {base}"
            if index in self.resolved_at:
                print(f"seeds: {name}: resolved at {self.resolved_at[index]} pairs", flush=True)
            elif self.stopped:
                print(f"seeds: {name}: not resolved (the sweep stopped)", flush=True)
            else:
                pairs = last["pairs"] if last else 0
                print(f"seeds: {name}: not resolved at the cap ({design.looks[-1]} seeds, {pairs} pairs); raise "
                      "hydra.sweeper.max_seeds or accept that the difference is too small to see", flush=True)
        print(f"seeds: written {self.sweep_dir / RECORD_FILE}; report it: python -m experiments.report "
              f"{self.sweep_dir} --baseline {base}", flush=True)


def _describe(test: Any, confidence: float) -> str:
    if test.n < 2 or test.low is None:
        return f"{test.n} pair(s), no interval yet"
    return (f"Δ = {test.mean:+.4f}, {_percent(confidence)} interval [{test.low:+.4f}, {test.high:+.4f}], "
            f"p = {test.p_value:.3g}, {test.n} pairs")


def _percent(confidence: float) -> str:
    return f"{100 * confidence:.4g} %"


def _finite(value: Any) -> Any:
    """The record with NaN/inf as null: JSON has no NaN (Python would write a token other readers refuse)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _whole(value: Any, key: str, minimum: int, why: str) -> int:
    from experiments.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"it must be a whole number, at least {minimum} ({why})",
                          f"set e.g. {key}={max(minimum, 3)}")
    return value
