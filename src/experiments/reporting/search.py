"""The search section of ``python -m experiments.report <sweep dir>`` when the dir holds a search (``search.json``).

It adds to the report: the study's trial counts (completed, pruned, failed), the best trial with its config (the
overrides that reproduce it), the ranked trials, the parameter importances, and the figures of
:mod:`experiments.search.explain` (PNG, beside the report); with ``--retest K`` the top ``K`` configurations
re-trained on fresh seeds (:mod:`experiments.search.retest`) with their test metric's 95 % interval. A study spans
every invocation that continued it, so the section covers all its trials, whichever sweep dir is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: most trials listed in the ranked table
MAX_RANKED = 10


@dataclass
class SearchSection:
    """What the report adds: Markdown lines, console lines, figures written."""

    markdown: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def is_search(sweep_dir: Path) -> bool:
    from experiments.search.storage import SEARCH_RECORD

    return (Path(sweep_dir) / SEARCH_RECORD).is_file()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _best_config(best: dict[str, Any]) -> str:
    """The overrides that reproduce the best trial (its first run's, less what only the search needed)."""
    from experiments.run.layout import RunDir
    from experiments.search.storage import trial_overrides

    for run_dir in best.get("run_dirs", []):
        record = RunDir(run_dir).read_record()
        if record:
            return " ".join(trial_overrides(record.get("overrides") or []))
    return " ".join(f"{k}={v}" for k, v in best["params"].items())


def section(sweep_dir: Path, out_dir: Path, plots: bool = True, retest_k: int = 0, retest_seeds: int = 3,
            echo: Any = print) -> SearchSection:
    """The search section for ``sweep_dir`` (empty when it is not a search)."""
    from experiments.search.storage import read_record

    record = read_record(sweep_dir)
    result = SearchSection()
    if record is None:
        return result
    try:
        from experiments.search.explain import explain
        from experiments.search.storage import load_study

        study = load_study(record)
    except Exception as err:  # noqa: BLE001 - no optuna, a moved or locked study file: the rest of the report stands
        note = f"the study {record.get('study_name')} in {record.get('storage')} cannot be opened: {err}"
        result.markdown = ["## Search", "", note]
        result.console = [note]
        return result
    metric = str(record.get("metric") or "val/acc")
    found = explain(study, metric, out_dir if plots else None)
    result.figures = list(found.figures)
    counts = found.counts
    lines = ["## Search", "", f"Study `{found.study_name}` in `{record.get('storage')}`: {found.direction} `{metric}`; "
             f"{counts['complete']} completed, {counts['pruned']} pruned, {counts['fail']} failed trials "
             f"(pruned trials were stopped early by the {record.get('pruner', {}).get('name', '?')} pruner; "
             f"they are neither failed nor incomplete). Browse it: `optuna-dashboard {record.get('storage')}`.", ""]
    console = [f"search {found.study_name}: {counts['complete']} completed, {counts['pruned']} pruned, "
               f"{counts['fail']} failed trials"]
    if found.best is not None:
        best = found.best
        config = _best_config(best)
        lines += [f"**Best trial {best['number']}**: `{metric}` = {_fmt(best['value'])} (the best of many noisy "
                  "trials on the validation set, so biased upward: `--retest K` re-tests it on fresh seeds).", "",
                  f"Config: `{config}`", ""]
        console.append(f"best trial {best['number']}: {metric}={_fmt(best['value'])}  {config}")
        names = list(best["params"])
        lines += ["| trial | " + f"{metric} | " + " | ".join(f"`{n}`" for n in names) + " |",
                  "|---:|---:|" + "---:|" * len(names)]
        for trial in found.ranked[:MAX_RANKED]:
            lines.append(f"| {trial['number']} | {_fmt(trial['value'])} | "
                         + " | ".join(_fmt(trial['params'].get(n)) for n in names) + " |")
        lines.append("")
    if found.importances:
        lines += ["Parameter importances (fANOVA: share of the objective's variance over the completed trials):", ""]
        lines += [f"- `{name}`: {value:.2f}" for name, value in found.importances.items()]
        console.append("importances: " + ", ".join(f"{n}={v:.2f}" for n, v in found.importances.items()))
    elif found.importance_note:
        lines.append(f"Parameter importances: {found.importance_note}.")
    lines.append("")
    if retest_k > 0 and found.ranked:
        lines += _retest_lines(found, sweep_dir, record, retest_k, retest_seeds, echo, console)
    if found.figures:
        lines += [f"![{p.stem}]({p.name})" for p in found.figures] + [""]
    result.markdown, result.console = lines, console
    return result


def _retest_lines(found: Any, sweep_dir: Path, record: dict[str, Any], k: int, n_seeds: int, echo: Any,
                  console: list[str]) -> list[str]:
    from experiments.reporting.render import format_interval, format_stat
    from experiments.search.retest import FRESH_SEED_BASE, retest
    from experiments.specs import TASKS

    metric = str(record.get("metric") or "val/acc")
    spec = TASKS.get(str(record.get("task")), TASKS["classification"])
    test_metric = spec.test_metric if metric == spec.monitor else "test/" + metric.split("/", 1)[-1]
    results = retest(found, Path(sweep_dir), k, n_seeds, metric, test_metric, out=echo)
    lines = [f"### Top {k} re-tested on fresh seeds", "",
             f"Each configuration trained again on seeds {FRESH_SEED_BASE}..{FRESH_SEED_BASE + n_seeds - 1} (never "
             "used by the search); mean ± std and 95 % Student-t interval over those seeds.", "",
             f"| trial | search {metric} | n | {metric} | {test_metric} | {test_metric} 95 % CI |",
             "|---:|---:|---:|---:|---:|---|"]
    for item in results:
        lines.append(f"| {item.number} | {_fmt(item.search_value)} | {item.completed} | "
                     f"{format_stat(metric, item.val)} | {format_stat(test_metric, item.test)} | "
                     f"{format_interval(test_metric, item.test)} |")
        console.append(f"re-test trial {item.number}: {test_metric} {format_stat(test_metric, item.test)} "
                       f"{format_interval(test_metric, item.test)} (n={item.completed}; search {metric}="
                       f"{_fmt(item.search_value)})")
        if item.returncode != 0:
            lines.append(f"| | | | re-test exited {item.returncode}: see `{item.sweep_dir}/retest.log` | | |")
    return [*lines, ""]
