"""What every section shares: the budget in force, where runs go, where the page and its figures go.

Two budgets exist. ``full`` is the page's: each section's :class:`Budget` names its seeds (three by default),
data and epochs sized so the whole page regenerates within :data:`PAGE_BUDGET_MIN` minutes on a 2-core CPU;
``--seeds KEY=N`` raises one section's seeds to ``0..N−1`` (what the planner asks for an unresolved claim) and
``--plan`` prints what that costs. ``quick`` is a smoke run (two
seeds, a few hundred images, one or two epochs): every command, report, figure and claim is exercised,
and ``tests/test_classics.py``'s slow tests check the claims there, with the margins the page states.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.classics import evidence
from experiments.classics.claims import Claim
from experiments.classics.jobs import Job, train_job
from experiments.config import project_root

FULL, QUICK = "full", "quick"
#: wall-clock budget of ``make classics`` at the full budget, on 2 cores (``--plan`` compares the plan with it)
PAGE_BUDGET_MIN = 45.0
#: the overfitting diagnostic's eval-mode re-measurement of the training images (one more pass over up to 2 000 images
#: per epoch) is off in every section but the one whose claims are about the train − validation gap
NO_GAP = "diagnostics.overfitting.train_images=0"
#: the sections that keep it
GAP_SECTIONS = ("overfitting",)
#: the checkout whose docs/ the page is written into (commands run from here)
REPO = Path(project_root())


@dataclass(frozen=True)
class Budget:
    """One section's training budget: seeds, the overrides that size its runs, the planned seconds per run."""

    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    #: planned seconds of one training run on one core of a 2-core CPU (the page's budget table)
    run_s: float = 10.0

    @property
    def seed_list(self) -> str:
        return ",".join(map(str, self.seeds))

    def with_seeds(self, n: int) -> Budget:
        """The same budget with seeds ``0..n−1`` (``--seeds KEY=N``)."""
        from dataclasses import replace

        return replace(self, seeds=tuple(range(n)))


@dataclass
class Context:
    """Paths and budget of one ``python -m experiments.classics`` invocation."""

    budget: str
    out: Path
    docs: Path
    #: jobs of each section, filled while planning (the page prints their commands and wall times)
    jobs: dict[str, list[Job]] = field(default_factory=dict)
    #: ``--seeds KEY=N``: sections whose seeds are raised (or lowered) to ``0..N−1``
    seed_counts: dict[str, int] = field(default_factory=dict)
    #: the section being planned or rendered (set by ``__main__``), so :meth:`pick` knows whose seeds to apply
    section: str | None = None
    #: the budget each section used, as :meth:`pick` gave it (the page prints its seeds)
    picked: dict[str, Budget] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.budget == QUICK

    @property
    def images(self) -> Path:
        return self.docs / "images" / "classics"

    def dir(self, section: str) -> Path:
        return self.out / section

    def pick(self, budgets: dict[str, Budget]) -> Budget:
        """The section's budget at this invocation's level, with its seeds as ``--seeds`` set them."""
        budget = budgets[self.budget]
        if self.section is not None:
            if self.section in self.seed_counts:
                budget = budget.with_seeds(self.seed_counts[self.section])
            self.picked[self.section] = budget
        return budget

    def sweeps(self, section: str, overrides: Sequence[str], budget: Budget, runs_per_slice: int,
               slices: Sequence[tuple[str, Sequence[str]]] | None = None) -> list[Job]:
        """One ``experiments.train -m`` sweep per slice (default: one per seed) under ``<section>/runs/``.

        Splitting a study into slices keeps both cores busy to the end; the report merges the slices again
        (runs are grouped by their overrides, wherever they live).
        """
        if slices is None:
            slices = [(f"seed{s}", [f"seed={s}"]) for s in budget.seeds]
        gap = () if section in GAP_SECTIONS else (NO_GAP,)
        return [
            train_job(section, name, [*overrides, *budget.overrides, *gap, *extra], self.dir(section) / "runs" / name,
                      estimate_s=budget.run_s * runs_per_slice)
            for name, extra in slices
        ]

    def figure(self, source: Path | None, name: str) -> str | None:
        """Publish a PNG next to the page (< 200 kB); returns its link relative to the page, None if absent."""
        published = evidence.publish(source, self.images / f"{name}.png", min_width=360)
        return None if published is None else published.relative_to(self.docs).as_posix()

    def rel(self, path: Path) -> str:
        """A path as the page prints it: relative to the repository when inside it."""
        try:
            return Path(path).resolve().relative_to(REPO).as_posix()
        except ValueError:
            return str(path)


@dataclass
class Rendered:
    """A section's part of the page."""

    key: str
    title: str
    body: str
    claims: list[Claim]
    #: one sentence for the closing verdict table: why the verdict is what it is
    why: str
    figures: list[str] = field(default_factory=list)


def image(link: str | None, alt: str, caption: str) -> str:
    """A figure with its caption; says plainly when the figure is missing (its run failed)."""
    if link is None:
        return f"*Figure missing ({alt}): the run that draws it did not complete; see the logs.*"
    return f"![{alt}]({link})\n\n*{caption}*"


def commands(jobs: Sequence[Job], rel: Callable[[Path], str]) -> str:
    """The exact commands a section ran, in a shell block (paths relative to the repository), failures marked."""

    def show(arg: str) -> str:
        key, sep, value = arg.partition("=")
        if sep and value.startswith("/"):
            return f"{key}={rel(Path(value))}"
        return rel(Path(arg)) if arg.startswith("/") else arg

    lines, reasons = [], []
    for job in jobs:
        line = shlex.join(["python", *(show(a) for a in job.args)])
        if job.returncode not in (None, 0):
            line += f"   # FAILED (exit {job.returncode}; see below)"
            reasons.append(f"- `{job.name}` ({rel(job.log)}): {failure(job, rel)}")
        lines.append(line)
    text = "```bash\n" + "\n".join(lines) + "\n```"
    if reasons:
        text += "\n\nWhat failed (each log's last error line; a sweep exits 1 when any of its runs fails, and the " \
                "runs that completed are still read back):\n\n" + "\n".join(reasons) + "\n"
    return text


def failure(job: Job, rel: Callable[[Path], str] = str) -> str:
    """Why ``job`` failed, in one line: each run of its sweep that did not complete, with its overrides and the
    sentence its ``metrics.json`` recorded (e.g. the divergence guard's), else the log's last error line."""
    from experiments.classics.jobs import last_error

    parts = []
    sweep = next((a.split("=", 1)[1] for a in job.args if a.startswith("hydra.sweep.dir=")), None)
    if sweep is not None:
        runs = sweep_runs(Path(sweep))
        bad = [(overrides, status, error) for overrides, status, error in runs if status != "completed"]
        if runs:
            parts.append(f"{len(bad)} of {len(runs)} runs did not complete")
        for overrides, status, error in bad[:3]:
            parts.append(f"{' '.join(overrides) or 'a run'}: {status}" + (f", `{error}`" if error else ""))
        if bad and all(error for _, _, error in bad):
            return "; ".join(parts)
    error = last_error(job.log)
    parts.append(f"`{error}`" if error else "the log holds no error line")
    return "; ".join(parts)


def sweep_runs(sweep: Path) -> list[tuple[list[str], str, str | None]]:
    """(overrides, status, error sentence) of every run under a sweep dir, from its ``metrics.json`` (status
    ``missing`` when there is none)."""
    import json

    found = []
    for child in sorted(p for p in sweep.iterdir() if p.is_dir()) if sweep.is_dir() else []:
        if not (child / ".hydra").is_dir() and not (child / "metrics.json").is_file():
            continue
        try:
            record = json.loads((child / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found.append(([], "missing", None))
            continue
        overrides = [o for o in record.get("overrides") or [] if not o.startswith(("hydra.", "seed="))]
        found.append((overrides, str(record.get("status")), record.get("error")))
    return found


def sweep_statuses(sweep: Path) -> list[str]:
    """The status every run under a sweep dir recorded in its ``metrics.json`` (``missing`` when none)."""
    return [status for _, status, _ in sweep_runs(sweep)]
