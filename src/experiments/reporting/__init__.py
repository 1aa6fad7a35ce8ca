"""Read finished runs from disk and summarise a sweep (used by ``python -m experiments.report``).

Nothing in this package imports torch or lightning: a report only reads ``metrics.json`` and Hydra's
YAML files, so it starts fast and works on a machine without the training stack.  The plotting module
(:mod:`experiments.reporting.plots`) is deliberately not imported here, because matplotlib is the one
slow import and is only needed when PNGs are written.
"""

from experiments.reporting.aggregate import (
    Group,
    Stat,
    Summary,
    group_runs,
    markdown_table,
    mean_std,
    render_markdown,
    summarize,
    sweep_constants,
    write_csv,
)
from experiments.reporting.runs import RunResult, collect_runs, find_run_dirs, load_run

__all__ = [
    "Group",
    "RunResult",
    "Stat",
    "Summary",
    "collect_runs",
    "find_run_dirs",
    "group_runs",
    "load_run",
    "markdown_table",
    "mean_std",
    "render_markdown",
    "summarize",
    "sweep_constants",
    "write_csv",
]
