"""Hydra callbacks for multiruns: the sweep's exit status says whether every job completed.

Why this exists: ``experiments.train`` lets a failing job *return* in multirun mode (so Hydra carries on
with the rest of the grid, whatever the launcher), which would leave a sweep with failures ending in
status 0. :class:`SweepStatus` reads every job's ``metrics.json`` once all jobs have returned, prints one
line per failed job and exits non-zero. It reads files only (no torch import), so it costs nothing.

It lives with the report because it is one: it reads the jobs' run dirs exactly as the report does
(:func:`~experiments.reporting.runs.load_run`), after they finished. Registered in ``conf/train.yaml``
under ``hydra.callbacks``; Hydra calls ``on_multirun_*`` in the
launching process even when the jobs ran in joblib workers or on a Slurm cluster.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.reporting.runs import COMPLETED, HYDRA_DIR, OVERRIDES_FILE, PRUNED, find_run_dirs, load_run

#: exit status of a sweep in which at least one job failed or did not finish
EXIT_FAILED_JOBS = 1


@dataclass(frozen=True)
class JobOutcome:
    """One job of the sweep as its run dir tells it."""

    name: str  # the job dir relative to the sweep dir: the job number with the default subdir
    overrides: list[str]
    completed: bool
    error: str | None
    pruned: bool = False  # stopped early by a search: not a failure

    @property
    def failed(self) -> bool:
        return not (self.completed or self.pruned)

    def line(self) -> str:
        """``failed job 3 [activation=sigmoid seed=1]: RuntimeError: ...`` -- one line, no traceback."""
        label = " ".join(self.overrides)
        return f"failed job {self.name} [{label}]: {self.error or 'no error recorded'}"


def _stamp(run_dir: Path) -> int | None:
    """When Hydra last (re)wrote the job's ``.hydra/overrides.yaml``, i.e. when that job last started."""
    path = run_dir / HYDRA_DIR / OVERRIDES_FILE
    return path.stat().st_mtime_ns if path.is_file() else None


def _snapshot(sweep_dir: Path) -> dict[Path, int | None]:
    return {run: _stamp(run) for run in find_run_dirs(sweep_dir)} if sweep_dir.is_dir() else {}


def sweep_outcomes(sweep_dir: Path, before: dict[Path, int | None] | None = None) -> list[JobOutcome]:
    """The jobs under ``sweep_dir``, in launch order; with ``before`` (a snapshot taken when the sweep
    started) only the jobs this sweep started, so a reused sweep dir's old jobs are not blamed again."""
    before = before or {}
    runs = [
        load_run(run_dir)
        for run_dir in (find_run_dirs(sweep_dir) if sweep_dir.is_dir() else [])
        if not (run_dir in before and before[run_dir] == _stamp(run_dir))
    ]
    # name a job by what sets it apart (the swept values), not by the overrides every job shares
    shared = set.intersection(*(set(run.overrides) for run in runs)) if len(runs) > 1 else set()
    return [
        JobOutcome(
            name=run.path.relative_to(sweep_dir).as_posix() if run.path != sweep_dir else run.path.name,
            overrides=[o for o in run.overrides if o not in shared],
            completed=run.status == COMPLETED,
            error=run.error,
            pruned=run.status == PRUNED,
        )
        for run in runs
    ]


def _refuse_ddp(config: DictConfig) -> None:
    """A DDP trainer in a sweep: one sentence and exit 2 before any job starts (each job would refuse it)."""
    from omegaconf import OmegaConf

    from experiments.validation.checks import strategy_name
    from experiments.validation.trainer import ddp_in_sweep

    typed = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=None) or []]
    trainer = config.get("trainer")
    message = ddp_in_sweep(typed, strategy_name(trainer) if isinstance(trainer, DictConfig) else "auto")
    if message:
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)


class SweepStatus(Callback):
    """Exit non-zero at the end of a multirun when any job failed, naming each failed job on one line (a job a
    search pruned did not fail)."""

    def __init__(self, exit_code: int = EXIT_FAILED_JOBS) -> None:
        self.exit_code = exit_code
        self._sweep_dir: Path | None = None
        self._before: dict[Path, int | None] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_ddp(config)
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        self._before = _snapshot(self._sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self._sweep_dir or Path(str(config.hydra.sweep.dir))
        outcomes = sweep_outcomes(sweep_dir, self._before)
        failed = [job for job in outcomes if job.failed]
        done, pruned = sum(job.completed for job in outcomes), sum(job.pruned for job in outcomes)
        extra = f", {pruned} pruned by the search" if pruned else ""
        print(f"sweep {sweep_dir}: {done} of {len(outcomes)} jobs completed{extra}", flush=True)
        print(f"compare them: python -m experiments.report {sweep_dir}", flush=True)
        if not outcomes:
            print(f"error: no job wrote a run dir under {sweep_dir}", file=sys.stderr, flush=True)
            sys.exit(self.exit_code)
        if failed:
            for job in failed:
                print(job.line(), file=sys.stderr)
            names = ", ".join(job.name for job in failed)
            print(f"error: {len(failed)} of {len(outcomes)} jobs failed (jobs {names})", file=sys.stderr, flush=True)
            # SystemExit passes through Hydra's callback wrapper (it only catches Exception) and Hydra's
            # run_and_report, so the shell sees the status without a traceback.
            sys.exit(self.exit_code)
