"""Commands the classics run, and the two-slot pool that runs them.

A *job* is one ordinary command line (``python -m experiments.train -m ...``, ``python -m experiments.report
...``, ``python -m experiments.inspect ...``), exactly what the page prints, with its own log file. The pool
runs ``slots`` jobs at once, each pinned to one torch thread (``OMP_NUM_THREADS=1``): on a 2-core CPU two
single-threaded processes train faster together than one process with two threads, and a sweep split into
slices (by seed or by arm) keeps both cores busy to the end. Longest jobs start first, so the tail is short.

A failing job does not stop the others: its exit status and log are recorded, and the section that needed it
says so on the page.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

#: environment of every job: one torch/BLAS thread each, no Hydra tracebacks, unbuffered logs
JOB_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}


@dataclass
class Job:
    """One command of a section: what it runs, where its log goes, and what it is expected to cost."""

    section: str
    name: str
    args: list[str]
    log: Path
    #: planned seconds on one core of a 2-core CPU (the budget table of the page)
    estimate_s: float = 10.0
    #: 1: runs and inspections; 2: reports, which read what phase 1 wrote
    phase: int = 1
    #: where the command's standard output is kept (inspect --format json), besides the log
    stdout: Path | None = None
    returncode: int | None = None
    wall_s: float | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The command line as a user would type it (``python`` for this interpreter, paths as given)."""
        return shlex.join(["python", *self.args])

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def train_job(section: str, name: str, overrides: Sequence[str], sweep_dir: Path, estimate_s: float) -> Job:
    """A ``python -m experiments.train -m`` sweep writing its runs under ``sweep_dir``."""
    args = ["-m", "experiments.train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    return Job(section, name, args, sweep_dir.parent / f"{sweep_dir.name}.log", estimate_s)


def report_job(section: str, name: str, dirs: Sequence[Path], out: Path, options: Sequence[str] = ()) -> Job:
    """``python -m experiments.report DIR... --out OUT [options]``: the table, intervals and plots of a sweep."""
    args = ["-m", "experiments.report", *map(str, dirs), "--out", str(out), *options]
    return Job(section, name, args, out.parent / f"{out.name}.log", estimate_s=4.0, phase=2)


def inspect_job(section: str, name: str, overrides: Sequence[str], out: Path, options: Sequence[str] = ()) -> Job:
    """``python -m experiments.inspect [overrides] --format json``; its JSON layer table is kept in ``out``."""
    args = ["-m", "experiments.inspect", *overrides, "--format", "json", *options]
    return Job(section, name, args, out.with_suffix(".log"), estimate_s=4.0, stdout=out)


def run_one(job: Job, cwd: Path) -> Job:
    """Run ``job`` to the end (never raises for a failing command); fills in its exit status and wall time."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **JOB_ENV, **job.extra_env}
    start = time.perf_counter()
    with job.log.open("w", encoding="utf-8") as log:
        log.write(f"$ {job.command}\n")
        log.flush()
        keep = job.stdout is not None
        out = subprocess.run([sys.executable, *job.args], cwd=cwd, env=env, text=True, check=False,
                             stdout=subprocess.PIPE if keep else log, stderr=log)
    if job.stdout is not None:
        job.stdout.parent.mkdir(parents=True, exist_ok=True)
        job.stdout.write_text(out.stdout or "", encoding="utf-8")
    job.returncode, job.wall_s = out.returncode, time.perf_counter() - start
    return job


def run_all(jobs: Sequence[Job], cwd: Path, slots: int = 2, echo: bool = True) -> list[Job]:
    """Run every job, ``slots`` at a time, longest estimate first; returns them in the order given."""
    if not jobs:
        return []
    order = sorted(jobs, key=lambda job: -job.estimate_s)
    done = 0

    def work(job: Job) -> Job:
        nonlocal done
        run_one(job, cwd)
        done += 1
        if echo:
            state = "ok" if job.ok else f"FAILED (exit {job.returncode}, log {job.log})"
            print(f"  [{done}/{len(jobs)}] {job.section}/{job.name}: {job.wall_s:.0f} s {state}", flush=True)
        return job

    with ThreadPoolExecutor(max_workers=max(1, slots)) as pool:
        list(pool.map(work, order))
    return list(jobs)


#: a line that names an error: an exception (``ValueError: ...``), the CLIs' one-sentence ``error: ...``, Hydra's
#: ``Error executing job with overrides: [...]``
_ERROR_LINE = re.compile(
    r"^\s*(?:[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b.*|error:.*|Error executing job.*)$")
#: lines that follow an error but say nothing about it
_NOISE = ("Set the environment variable HYDRA_FULL_ERROR",)


def last_error(log: Path, limit: int = 240) -> str | None:
    """The last line of ``log`` that names an error (prefixed with the overrides of the Hydra job that raised it,
    when the log says), shortened to ``limit`` characters; the last non-empty line when none does; None without
    a log."""
    try:
        lines = [line.rstrip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith(_NOISE)]
    if not lines:
        return None
    errors = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
    if not errors:
        found = lines[-1].strip()
    else:
        last = errors[-1]
        found = lines[last].strip()
        if not found.startswith("Error executing job"):
            job = next((lines[i].strip() for i in reversed(errors) if i < last
                        and lines[i].strip().startswith("Error executing job")), None)
            if job is not None:
                found = job.removeprefix("Error executing job with overrides: ") + " → " + found
    return found if len(found) <= limit else found[: limit - 1] + "…"


def save(jobs: Sequence[Job], path: Path, wall_s: float, budget: str, machine: str,
         extra: dict | None = None) -> None:
    """What ran, how long it took and how it ended: the page is rendered from this file with ``--render-only``."""
    import json

    record = {
        "budget": budget,
        "wall_s": wall_s,
        "machine": machine,
        **(extra or {}),
        "jobs": [
            {"section": j.section, "name": j.name, "args": j.args, "log": str(j.log), "estimate_s": j.estimate_s,
             "phase": j.phase, "stdout": None if j.stdout is None else str(j.stdout), "returncode": j.returncode,
             "wall_s": j.wall_s}
            for j in jobs
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")


def load(path: Path) -> tuple[list[Job], dict]:
    """The jobs and the rest of what :func:`save` recorded (budget, wall_s, machine); nothing when absent."""
    import json

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], {}
    jobs = [
        Job(j["section"], j["name"], list(j["args"]), Path(j["log"]), j["estimate_s"], j["phase"],
            None if j["stdout"] is None else Path(j["stdout"]), j["returncode"], j["wall_s"])
        for j in record.get("jobs", [])
    ]
    return jobs, {k: v for k, v in record.items() if k != "jobs"}
