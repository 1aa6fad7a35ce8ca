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
    mean_std,
    summarize,
    sweep_constants,
)
from experiments.reporting.comparison import Pairing, pair_by_seed
from experiments.reporting.csv_table import write_csv
from experiments.reporting.inference import (
    Interval,
    PairedTest,
    holm,
    paired_test,
    seed_interval,
    sign_flip_floor,
    sign_flip_min_seeds,
    wilson_interval,
    with_holm,
)
from experiments.reporting.render import (
    interval_table,
    markdown_table,
    pairing_notes,
    render_markdown,
)
from experiments.reporting.runs import RunResult, collect_runs, find_run_dirs, load_run
from experiments.reporting.selection import Selection
from experiments.reporting.stats import t_critical, t_quantile

__all__ = [
    "Group",
    "Interval",
    "PairedTest",
    "Pairing",
    "RunResult",
    "Selection",
    "Stat",
    "Summary",
    "collect_runs",
    "find_run_dirs",
    "group_runs",
    "holm",
    "interval_table",
    "load_run",
    "markdown_table",
    "mean_std",
    "pair_by_seed",
    "paired_test",
    "pairing_notes",
    "render_markdown",
    "seed_interval",
    "sign_flip_floor",
    "sign_flip_min_seeds",
    "summarize",
    "sweep_constants",
    "t_critical",
    "t_quantile",
    "wilson_interval",
    "with_holm",
    "write_csv",
]
