"""What every section shares: the budget in force, where runs go, where the page and its figures go.

Two budgets exist. ``full`` is the page's: three seeds wherever a claim needs an interval, data and epochs
sized so the whole page regenerates in about half an hour on a 2-core CPU. ``quick`` is a smoke run (two
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


@dataclass
class Context:
    """Paths and budget of one ``python -m experiments.classics`` invocation."""

    budget: str
    out: Path
    docs: Path
    #: jobs of each section, filled while planning (the page prints their commands and wall times)
    jobs: dict[str, list[Job]] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.budget == QUICK

    @property
    def images(self) -> Path:
        return self.docs / "images" / "classics"

    def dir(self, section: str) -> Path:
        return self.out / section

    def pick(self, budgets: dict[str, Budget]) -> Budget:
        return budgets[self.budget]

    def sweeps(self, section: str, overrides: Sequence[str], budget: Budget, runs_per_slice: int,
               slices: Sequence[tuple[str, Sequence[str]]] | None = None) -> list[Job]:
        """One ``experiments.train -m`` sweep per slice (default: one per seed) under ``<section>/runs/``.

        Splitting a study into slices keeps both cores busy to the end; the report merges the slices again
        (runs are grouped by their overrides, wherever they live).
        """
        if slices is None:
            slices = [(f"seed{s}", [f"seed={s}"]) for s in budget.seeds]
        return [
            train_job(section, name, [*overrides, *budget.overrides, *extra], self.dir(section) / "runs" / name,
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

    lines = []
    for job in jobs:
        line = shlex.join(["python", *(show(a) for a in job.args)])
        if job.returncode not in (None, 0):
            line += f"   # FAILED (exit {job.returncode})"
        lines.append(line)
    return "```bash\n" + "\n".join(lines) + "\n```"
