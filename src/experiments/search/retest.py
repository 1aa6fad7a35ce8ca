"""The top configurations of a search, trained again on fresh seeds and tested: an honest estimate of the winner.

The best trial's validation value is biased upward: it is the maximum over many noisy trials (the winner's curse),
and the same validation set chose it. So the top ``k`` completed trials are trained again, each on ``n`` seeds the
search never used (:data:`FRESH_SEED_BASE` + 0, 1, ...), with exactly their trial's overrides, and the report gives
their *test* metric as mean and 95 % interval over those seeds (the report's Student-t intervals), beside the value
the search saw. Each re-test is an ordinary run per seed, ``<search dir>-retest/trial_<n>/seed_<s>`` (beside the
search dir, so that a report of the search does not mix them in), with ``resume=true``: running the report again
continues or skips what is already there.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: fresh seeds start here, far from the small seeds a search uses
FRESH_SEED_BASE = 1000
#: suffix of the directory beside the search dir that holds the re-tests
RETEST_SUFFIX = "-retest"


@dataclass
class Retest:
    """One re-tested trial: its search value and the re-runs' metrics over the fresh seeds."""

    number: int
    search_value: float
    params: dict[str, Any]
    sweep_dir: Path
    returncode: int
    val: Any = None  # reporting.stats.Stat of the validation metric
    test: Any = None  # reporting.stats.Stat of the test metric
    completed: int = 0


def retest_dir(search_dir: Path) -> Path:
    return Path(search_dir).parent / f"{Path(search_dir).name}{RETEST_SUFFIX}"


def run_command(overrides: list[str], seed: int, run_dir: Path) -> list[str] | None:
    """The ``python -m experiments.train`` command that re-trains one configuration on one seed (a single run: the
    experiment's sweeper settings stay unused): ``resume=true`` when an earlier attempt started there, None when
    it completed."""
    from experiments.run.layout import RunDir

    run = RunDir(run_dir)
    record = run.read_record() or {}
    if record.get("status") == "completed":
        return None
    resume = ["resume=true"] if run.has_started() else []
    return [sys.executable, "-m", "experiments.train", *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}",
            *resume, "print_config=false"]


def retest(explanation: Any, search_dir: Path, top_k: int, n_seeds: int, metric: str, test_metric: str,
           out: Any = print) -> list[Retest]:
    """Re-train the ``top_k`` best completed trials on ``n_seeds`` fresh seeds each; their statistics."""
    from experiments.reporting.runs import collect_runs
    from experiments.reporting.stats import mean_std
    from experiments.run.layout import RunDir
    from experiments.search.storage import trial_overrides

    seeds = [FRESH_SEED_BASE + i for i in range(n_seeds)]
    results = []
    for trial in explanation.ranked[:top_k]:
        record = next((RunDir(d).read_record() for d in trial["run_dirs"] if RunDir(d).read_record()), None)
        if record is None:
            out(f"re-test of trial {trial['number']}: skipped, its run dir is gone ({trial['run_dirs']})")
            continue
        sweep_dir = retest_dir(search_dir) / f"trial_{trial['number']}"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = trial_overrides(record.get("overrides") or [])
        out(f"re-testing trial {trial['number']} on seeds {seeds[0]}..{seeds[-1]}: {sweep_dir} (log: retest.log)")
        code = 0
        with open(sweep_dir / "retest.log", "a") as log:
            for seed in seeds:
                command = run_command(overrides, seed, sweep_dir / f"seed_{seed}")
                if command is None:
                    continue
                log.write(" ".join(command) + "\n")
                log.flush()
                code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode or code
        runs = [r for r in collect_runs([sweep_dir]) if r.completed]
        results.append(Retest(trial["number"], trial["value"], trial["params"], sweep_dir, code,
                              val=mean_std(r.metrics.get(metric) for r in runs),
                              test=mean_std(r.metrics.get(test_metric) for r in runs), completed=len(runs)))
    return results
