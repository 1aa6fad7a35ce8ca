"""``hydra/sweeper=optuna``: a Hydra sweeper on Optuna's ask/tell API that prunes, resumes and repairs.

Why our own: Hydra's ``hydra-optuna-sweeper`` (1.3.0, the newest) requires ``optuna<3``, whose SQLite storage
forces SQLAlchemy 1 and an old alembic, and it neither prunes nor counts ``n_trials`` across invocations.

What one invocation does, in order:

1. reads the search space (``params`` and the ``-m`` command line in Hydra's sweep syntax, see
   :mod:`experiments.search.space`), the sampler and pruner by name, the seeds, and composes one trial's config
   to check that every key exists and that the direction fits the task's metric: any mistake is one sentence and
   exit 2, before a trial starts;
2. opens (or creates) the study in its SQLite file, fails the trials a killed invocation left RUNNING and enqueues
   their parameters again (:mod:`experiments.search.storage`);
3. asks for ``n_jobs`` trials at a time (``n_jobs: null``: as many as the launcher runs at once, over the seeds),
   launches one job per (trial, seed) through the configured launcher (``hydra/launcher=packed`` runs them in
   parallel with a share of the cores each), each job reporting every epoch to its trial through
   ``callbacks.optuna_trial`` (:mod:`experiments.search.pruning`);
4. tells Optuna each trial's outcome from the jobs' ``metrics.json``: the mean of the seeds' metric, PRUNED when a
   seed was pruned, FAIL when one failed; until ``n_trials`` trials are done in total.

Job directories are ``<sweep dir>/<trial number>`` (``<trial>/seed_<s>`` with several seeds), so the report and
TensorBoard name every run by its trial.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: exit status of a bad search configuration (as every ConfigError of the project)
EXIT_BAD_CONFIG = 2


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


class OptunaSweeper(Sweeper):
    """The sweeper; its arguments are the keys of ``conf/hydra/sweeper/optuna.yaml``."""

    def __init__(self, study_name: str = "search", storage: str | None = None, direction: str | None = None,
                 metric: str | None = None, n_trials: int = 20, n_jobs: int | None = None,
                 seeds: Sequence[int] | None = None, max_failure_rate: float = 1.0, sampler: Any = None,
                 pruner: Any = None, params: Any = None) -> None:
        self.study_name, self.storage, self.direction, self.metric = str(study_name), storage, direction, metric
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.seeds = _plain(seeds)
        self.sampler_node, self.pruner_node = dict(_plain(sampler) or {}), dict(_plain(pruner) or {})
        self.params = dict(_plain(params) or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # -- the sweep ------------------------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> Any:
        from experiments.errors import ConfigError

        try:
            search = _Search(self, self._plan(arguments))
            study = search.open_study()
        except ConfigError as err:  # a bad search: one sentence, exit 2, no trial started
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_BAD_CONFIG)
        return search.run(study)

    def _plan(self, arguments: Sequence[str]) -> dict[str, Any]:
        """Everything checked and resolved before the study is touched (see step 1 of the module doc)."""
        from experiments.errors import ConfigError
        from experiments.search import objective, space, strategies
        from experiments.speed.settings import launcher_jobs

        assert self.config is not None
        search = space.parse(self.params, arguments)
        if not search.distributions:
            raise ConfigError(space.PARAMS_KEY, self.params or "{}", "the search space has no parameter to sample",
                              "give e.g. hydra.sweeper.params={optimizer.lr:'tag(log, interval(1e-4, 1e-1))'}")
        seeds = self._seeds()
        n_trials = _whole(self.n_trials, "hydra.sweeper.n_trials", minimum=1)
        n_jobs = None if self.n_jobs is None else _whole(self.n_jobs, "hydra.sweeper.n_jobs", minimum=1)
        if not isinstance(self.max_failure_rate, (int, float)) or not 0 <= self.max_failure_rate <= 1:
            raise ConfigError("hydra.sweeper.max_failure_rate", self.max_failure_rate, "it is a fraction of trials",
                              "give a number from 0 to 1")
        strategies.build_sampler(self.sampler_node)
        strategies.warmup_epochs(self.pruner_node)
        sample = self._compose(search, seeds)
        task, metric, direction = objective.resolve(sample, self.metric, self.direction)
        max_epochs = OmegaConf.select(sample, "trainer.max_epochs", default=None)
        if len(seeds) > 1 and (not isinstance(max_epochs, int) or max_epochs < 1):
            raise ConfigError("trainer.max_epochs", max_epochs, "several seeds per trial report at steps "
                              "seed_index * max_epochs + epoch, which needs a fixed epoch count",
                              "set trainer.max_epochs to a positive number")
        pruner_node = self._pruner_node(len(seeds), max_epochs)
        strategies.build_pruner(pruner_node)
        storage = self.storage or _default_storage(self.config, self.study_name)
        return {"space": search, "seeds": seeds, "n_trials": n_trials, "n_jobs": n_jobs, "task": task,
                "metric": metric, "direction": direction, "pruner": pruner_node, "storage": str(storage),
                "packing": launcher_jobs(self.config.hydra),
                "auto_packing": OmegaConf.select(sample, "trainer.packed_jobs", default="auto") == "auto"}

    def _seeds(self) -> list[int | None]:
        """The seeds every trial trains on; ``[None]``: the config's own seed, no override."""
        from experiments.errors import ConfigError

        if self.seeds is None:
            return [None]
        seeds = self.seeds if isinstance(self.seeds, list) else [self.seeds]
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ConfigError("hydra.sweeper.seeds", self.seeds, "it must list distinct whole numbers",
                              "write e.g. hydra.sweeper.seeds=[0,1,2], or null for the config's seed")
        return list(seeds)

    def _pruner_node(self, n_seeds: int, max_epochs: Any) -> dict[str, Any]:
        """The pruner node with Hyperband's ``max_resource: auto`` made explicit: every process builds the same one
        (``auto`` would be estimated from whichever trials each process happens to see)."""
        node = dict(self.pruner_node)
        if node.get("name") == "hyperband" and node.get("max_resource", "auto") == "auto" \
                and isinstance(max_epochs, int) and max_epochs > 0:
            node["max_resource"] = n_seeds * max_epochs
        return node

    def _compose(self, search: Any, seeds: Sequence[int | None]) -> DictConfig:
        """One trial's config (the space's first values): a key the config lacks is named in one sentence."""
        from experiments.errors import ConfigError

        assert self.hydra_context is not None and self.config is not None
        loader = self.hydra_context.config_loader
        seed = [] if seeds[0] is None else [f"seed={seeds[0]}"]
        overrides = search.overrides(search.sample()) + seed
        try:
            return loader.load_sweep_config(self.config, overrides)
        except Exception as err:  # noqa: BLE001 - Hydra's loader raises AssertionErrors too
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            error = ConfigError("hydra.sweeper", " ".join(overrides), f"a trial's config cannot be composed ({first})",
                                "correct the override it names (sweep over a key as key=interval(..) on the command "
                                "line, or as a flat 'a.b' key of hydra.sweeper.params)")
            if not _composes(loader, self.config, search.fixed + seed):
                raise error from err
            for name in search.distributions:  # which parameter: each one alone
                alone = [o for o in search.overrides(search.sample()) if o.split("=", 1)[0] == search.keys[name]]
                if not _composes(loader, self.config, search.fixed + seed + alone):
                    raise ConfigError(search.where[name], search.sources[name], "the config has no such key "
                                      "or group", "check its spelling (python -m experiments.train --cfg job lists "
                                      "every key; add a new one as +key)") from err
            raise error from err


def _composes(loader: Any, config: DictConfig, overrides: list[str]) -> bool:
    try:
        loader.load_sweep_config(config, overrides)
    except Exception:  # noqa: BLE001 - any failure to compose answers the question
        return False
    return True


class _Search:
    """One invocation's loop over the study (steps 2 to 4 of the module doc)."""

    def __init__(self, sweeper: OptunaSweeper, plan: dict[str, Any]) -> None:
        self.sweeper, self.plan = sweeper, plan
        assert sweeper.config is not None
        self.sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
        self.space, self.seeds = plan["space"], plan["seeds"]
        self.trial_dirs: dict[int, list[str]] = {}
        self.counts = {"complete": 0, "pruned": 0, "failed": 0}

    def run(self, study: Any) -> list[Any]:
        from experiments.search import storage, strategies

        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.sweeper.config, self.sweep_dir / "multirun.yaml")  # as Hydra's basic sweeper: run names
        repaired = storage.repair_running(study)
        if repaired:
            print(f"search: trial(s) {', '.join(map(str, repaired))} were left running by a stopped sweep: marked "
                  "failed, their parameters proposed again", flush=True)
        done = storage.trials_done(study)
        remaining = self.plan["n_trials"] - done
        n_jobs = self.plan["n_jobs"] or max(1, self.plan["packing"] // len(self.seeds))
        pruner = strategies.pruner_settings(self.plan["pruner"])[0]
        print(f"search {self.sweeper.study_name}: {done} of {self.plan['n_trials']} trials done, {max(0, remaining)} "
              f"to go, {n_jobs} at a time; {self.plan['direction']} {self.plan['metric']} ({pruner} pruner); "
              f"study {self.plan['storage']}", flush=True)
        if remaining <= 0:  # nothing to do is not a failure (and no job dir is expected)
            print(f"search {self.sweeper.study_name}: the study has its {self.plan['n_trials']} trials; raise "
                  "hydra.sweeper.n_trials to continue it", flush=True)
            self._finish(study)
            sys.exit(0)
        self._write_record()
        returns: list[Any] = []
        ran = 0
        while remaining > 0:
            trials = [study.ask(self.space.distributions) for _ in range(min(n_jobs, remaining))]
            returns.append(self._launch(study, trials))
            remaining -= len(trials)
            ran += len(trials)
            self._write_record()
            if ran and self.counts["failed"] / ran > self.sweeper.max_failure_rate:
                print(f"error: {self.counts['failed']} of {ran} trials failed, more than max_failure_rate="
                      f"{self.sweeper.max_failure_rate}; the search stops", file=sys.stderr, flush=True)
                break
        self._finish(study)
        return returns

    def open_study(self) -> Any:
        """The study, created or loaded; a stored study that optimises something else is a ConfigError."""
        import optuna

        from experiments.errors import ConfigError
        from experiments.search import storage, strategies

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from the sweeper instead
        study = optuna.create_study(
            storage=storage.open_storage(self.plan["storage"]), study_name=self.sweeper.study_name,
            sampler=strategies.build_sampler(self.sweeper.sampler_node),
            pruner=strategies.build_pruner(self.plan["pruner"]), direction=self.plan["direction"],
            load_if_exists=True)
        stored = {"metric": study.user_attrs.get("metric"), "direction": study.direction.name.lower()}
        if stored["metric"] is None:
            study.set_user_attr("metric", self.plan["metric"])
            study.set_user_attr("task", self.plan["task"])
            study.set_user_attr("seeds", self.seeds)
        elif (stored["metric"], stored["direction"]) != (self.plan["metric"], self.plan["direction"]):
            raise ConfigError("hydra.sweeper.study_name", self.sweeper.study_name, f"the study in "
                              f"{self.plan['storage']} {stored['direction']}s {stored['metric']}, not "
                              f"{self.plan['metric']}", "give this search another study_name")
        return study

    def _launch(self, study: Any, trials: list[Any]) -> list[Any]:
        """One batch: a job per (trial, seed), launched together; then every trial told its outcome."""
        from experiments.search.space import hydra_value
        from experiments.search.storage import CALLBACK_KEY

        jobs: list[list[str]] = []
        where: list[tuple[Any, int, str]] = []
        from experiments.search.strategies import OWN_PRUNER_KEYS, warmup_epochs

        pruner = self.plan["pruner"]
        shared = {"_target_": "experiments.search.pruning.TrialReporter", "storage": self.plan["storage"],
                  "study_name": self.sweeper.study_name,
                  "pruner": {k: v for k, v in pruner.items() if k not in OWN_PRUNER_KEYS},
                  "warmup_epochs": warmup_epochs(pruner), "monitor": self.plan["metric"]}
        packing = self.plan["packing"]
        concurrent = min(packing, len(trials) * len(self.seeds))
        for trial in trials:
            for index, seed in enumerate(self.seeds):
                subdir = str(trial.number) if len(self.seeds) == 1 else f"{trial.number}/seed_{seed}"
                overrides = self.space.overrides(trial.params)
                overrides += [] if seed is None else [f"seed={seed}"]
                if self.plan["auto_packing"] and concurrent < packing:  # the cores shared by the jobs really running
                    overrides.append(f"trainer.packed_jobs={concurrent}")
                overrides += [f"+{CALLBACK_KEY}.{key}={hydra_value(value)}" for key, value in shared.items()]
                overrides += [f"+{CALLBACK_KEY}.trial={trial.number}", f"+{CALLBACK_KEY}.seed_index={index}",
                              f"hydra.sweep.subdir={hydra_value(subdir)}"]
                jobs.append(overrides)
                where.append((trial, index, subdir))
        self.sweeper.validate_batch_is_legal(jobs[:1])
        results = self.sweeper.launcher.launch(jobs, initial_job_idx=trials[0].number * len(self.seeds))
        by_trial: dict[int, list[tuple[str, Any]]] = {}
        for (trial, _index, subdir), result in zip(where, results, strict=True):
            by_trial.setdefault(trial.number, []).append((subdir, result))
        for trial in trials:
            self._tell(study, trial, by_trial.get(trial.number, []))
        return list(results)

    def _tell(self, study: Any, trial: Any, jobs: list[tuple[str, Any]]) -> None:
        """The trial's outcome from its jobs (see step 4 of the module doc), told to Optuna and printed."""
        from optuna.trial import TrialState

        from experiments.search.storage import pruned_marks

        outcomes = [self._outcome(subdir, result) for subdir, result in jobs]
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        marks = pruned_marks(frozen)
        self.trial_dirs[trial.number] = [str(self.sweep_dir / subdir) for subdir, _ in jobs]
        trial.set_user_attr("run_dirs", self.trial_dirs[trial.number])
        trial.set_user_attr("seed_values", [value for kind, value in outcomes if kind == "value"])
        params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        if marks or any(kind == "pruned" for kind, _ in outcomes):
            study.tell(trial, state=TrialState.PRUNED)
            self.counts["pruned"] += 1
            first = min(marks.values(), key=lambda m: m.get("epoch", 0), default={}) if marks else {}
            at = f" at epoch {first['epoch']} ({self.plan['metric']}={_short(first.get('value'))})" if first else ""
            print(f"trial {trial.number} [{params}]: pruned{at}", flush=True)
        elif any(kind == "failed" for kind, _ in outcomes) or not outcomes:
            study.tell(trial, state=TrialState.FAIL)
            self.counts["failed"] += 1
            why = next((value for kind, value in outcomes if kind == "failed"), "no job ran")
            print(f"trial {trial.number} [{params}]: failed ({why})", flush=True)
        else:
            values = [float(value) for _, value in outcomes]
            mean = sum(values) / len(values)
            study.tell(trial, mean)
            self.counts["complete"] += 1
            seeds = f" (mean of {len(values)} seeds)" if len(values) > 1 else ""
            print(f"trial {trial.number} [{params}]: {self.plan['metric']}={mean:.4f}{seeds}", flush=True)

    def _outcome(self, subdir: str, result: Any) -> tuple[str, Any]:
        """``("value", x)``, ``("pruned", None)`` or ``("failed", why)`` of one job, from its ``metrics.json``."""
        from hydra.core.utils import JobStatus

        from experiments.run.layout import RunDir

        record = RunDir(self.sweep_dir / subdir).read_record()
        status = record.get("status") if record else None
        if status == "pruned":
            return "pruned", None
        if status == "completed":
            value = (record.get("metrics") or {}).get(self.plan["metric"])
            if isinstance(value, (int, float)) and math.isfinite(value):
                return "value", float(value)
            return "failed", f"the run recorded no finite {self.plan['metric']}"
        if record is None and result.status == JobStatus.COMPLETED and isinstance(result.return_value, (int, float)):
            return "value", float(result.return_value)  # a task function that writes no record
        if record is not None and record.get("error"):
            return "failed", str(record["error"]).splitlines()[0]
        if result.status == JobStatus.FAILED:
            return "failed", f"{type(result._return_value).__name__}: {result._return_value}".splitlines()[0]
        return "failed", f"status {status!r} in {subdir}/metrics.json"

    def _write_record(self) -> None:
        from experiments.search.storage import write_record

        write_record(self.sweep_dir, {
            "storage": self.plan["storage"], "study_name": self.sweeper.study_name, "task": self.plan["task"],
            "metric": self.plan["metric"], "direction": self.plan["direction"], "seeds": self.seeds,
            "n_trials": self.plan["n_trials"], "pruner": self.plan["pruner"], "sampler": self.sweeper.sampler_node,
            "space": dict(self.space.sources), "fixed": list(self.space.fixed),
            "trials": {str(k): v for k, v in self.trial_dirs.items()},
        })

    def _finish(self, study: Any) -> None:
        """Best trial to ``optimization_results.yaml``, one summary line, and where to look next."""
        from optuna.trial import TrialState

        from experiments.search.storage import RESULTS_FILE

        states = [t.state for t in study.get_trials(deepcopy=False)]
        counts = {name: states.count(state) for name, state in
                  (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED), ("failed", TrialState.FAIL))}
        summary = {"name": "optuna", "study_name": self.sweeper.study_name, "storage": self.plan["storage"],
                   "metric": self.plan["metric"], "direction": self.plan["direction"], "trials": counts}
        best = "no completed trial yet"
        if counts["complete"]:
            trial = study.best_trial
            summary.update(best_trial=trial.number, best_value=trial.value, best_params=dict(trial.params))
            best = f"best trial {trial.number}: {self.plan['metric']}={trial.value:.4f} " + " ".join(
                f"{k}={_short(v)}" for k, v in trial.params.items())
        OmegaConf.save(OmegaConf.create(summary), self.sweep_dir / RESULTS_FILE)
        print(f"search {self.sweeper.study_name}: {counts['complete']} complete, {counts['pruned']} pruned, "
              f"{counts['failed']} failed trials in the study; {best}", flush=True)
        print(f"explain it: python -m experiments.report {self.sweep_dir}   browse it: optuna-dashboard "
              f"{self.plan['storage']}", flush=True)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _whole(value: Any, key: str, minimum: int) -> int:
    from experiments.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"it must be a whole number, at least {minimum}", f"set e.g. {key}=10")
    return value


def _default_storage(config: DictConfig, study_name: str) -> str:
    """``sqlite:///<paths.output_dir>/optuna/<study_name>.db``: stable, whatever the sweep dir's time stamp."""
    output = OmegaConf.select(config, "paths.output_dir", default=None) or "outputs"
    return f"sqlite:///{Path(str(output)).resolve() / 'optuna' / f'{study_name}.db'}"
