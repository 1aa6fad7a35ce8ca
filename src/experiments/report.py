"""Aggregate a finished sweep into a table and plots: ``python -m experiments.report DIR [DIR ...]``.

Kept thin on purpose: discovery/loading live in :mod:`experiments.reporting.runs`, grouping and the
Markdown/CSV rendering in :mod:`experiments.reporting.aggregate`, plots in
:mod:`experiments.reporting.plots`, the per-class table (``report_per_class.csv``) in
:mod:`experiments.reporting.per_class`.  Only argparse and the standard library are imported before the
arguments are parsed, so ``--help`` is instant, and torch/lightning are never imported at all.

Exit status: 0 when at least one completed run was found (failed/missing runs are listed in the report),
1 when no runs, or no completed runs, were found (a report is still written in the latter case, so the
failures can be read), 2 for a directory that does not exist, a ``--baseline`` or ``--best-of`` that does
not fit the sweep (one sentence, nothing written), or bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_NO_RUNS, EXIT_BAD_DIR = 0, 1, 2
EXIT_BAD_ARGS = EXIT_BAD_DIR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report",
        description=(
            "Aggregate sweep/run directories (anything containing metrics.json written by "
            "python -m experiments.train) into report.md, report.csv and PNG plots. Runs are grouped by "
            "their Hydra overrides minus seed and minus overrides shared by every run (an arm each); cells "
            "are mean ± sample std over seeds, with 95 % confidence intervals over seeds (inside [0, 1] for accuracy, "
            "mIoU and IoU), each run's own test-set noise (Wilson), and each arm's difference from a baseline arm "
            "paired by seed, with its paired t p-value, Holm-adjusted over the arms, and the exact sign-flip p."
        ),
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="sweep or run directories")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="where to write the report (default: first DIR)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib import)")
    parser.add_argument(
        "--baseline",
        metavar="ARM",
        default=None,
        help=(
            "the arm the others are compared with, named by its override(s) as key=value[,key=value], e.g. "
            "activation=relu or "
            "activation=relu,model.depth=20 ('(default)' names the arm without overrides); default: the first "
            "arm in sweep order with a completed run. Each other arm gets its difference from the baseline "
            "paired by seed (per-seed differences on the seeds both completed, then mean ± t(0.975, n-1)·s/√n, "
            "paired t p, Holm over the k-1 comparisons); '*' marks an interval that excludes 0"
        ),
    )
    parser.add_argument(
        "--best-of",
        metavar="KEY",
        default=None,
        help=(
            "an override key swept as a grid, e.g. optimizer.lr: within each arm (runs equal in every other "
            "override), pick the value of KEY with the best mean validation metric over seeds (val/miou for "
            "segmentation, else val/acc, maximised; val/loss, minimised, when it is the only one) and report "
            "the arm with the runs at that value only. Test metrics never take part in the choice; equal "
            "means go to the smallest value"
        ),
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="only runs tagged TAG (train with tags=[TAG,...]); repeat it for runs carrying every one of several tags",
    )
    parser.add_argument(
        "--include-debug",
        action="store_true",
        help="include debug runs (debug=fdr|overfit|limit|profiler, trainer.fast_dev_run), left out by default",
    )
    parser.add_argument(
        "--retest",
        type=int,
        default=0,
        metavar="K",
        help=(
            "for a hyper-parameter search (hydra/sweeper=optuna): train the K best configurations again on fresh "
            "seeds (into DIR/retest/) and report their test metric with 95 %% intervals; the best validation value "
            "of a search is biased upward"
        ),
    )
    parser.add_argument("--retest-seeds", type=int, default=3, metavar="N", help="fresh seeds per re-test (3)")
    from experiments.reporting.planning import add_plan_arguments

    add_plan_arguments(parser)
    return parser


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report; returns the exit status instead of raising so tests can call it in-process."""
    args = build_parser().parse_args(argv)
    dirs: list[Path] = []
    for raw in args.dirs:
        path = raw.parent if raw.is_file() and raw.name == "metrics.json" else raw
        if not path.is_dir():
            _error(f"{raw} is not an existing directory")
            return EXIT_BAD_DIR
        dirs.append(path)

    from experiments.reporting import aggregate, csv_table, render, runs

    records = runs.collect_runs(dirs)
    where = ", ".join(str(d) for d in dirs)
    if not records:
        _error(
            f"no runs found under {where}: expected directories containing metrics.json written by "
            "python -m experiments.train"
        )
        return EXIT_NO_RUNS
    records, debug_runs = runs.select_runs(records, tags=args.tag, include_debug=args.include_debug)
    if debug_runs:
        print(f"left out {debug_runs} debug run(s); --include-debug reports them too")
    if not records:
        wanted = f" tagged {', '.join(args.tag)}" if args.tag else ""
        _error(f"no runs{wanted} under {where} (besides {debug_runs} debug runs)" if debug_runs
               else f"no runs{wanted} under {where}: train with tags=[{','.join(args.tag)}] to tag runs")
        return EXIT_NO_RUNS

    from experiments.errors import ConfigError

    try:
        summary = aggregate.summarize(records, baseline=args.baseline, best_of=args.best_of)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_BAD_ARGS
    if args.plan:  # the seed plan reads the runs and writes nothing
        from experiments.reporting.planning import plan_text

        print(plan_text(summary, min_effect=args.min_effect), end="")
        return EXIT_OK
    out_dir: Path = args.out if args.out is not None else dirs[0]
    out_dir.mkdir(parents=True, exist_ok=True)

    plot_files: list[Path] = []
    if not args.no_plots and summary.completed:
        from experiments.reporting import plots

        plot_files = plots.write_plots(summary, out_dir)

    from experiments.reporting import per_class

    md_path, csv_path = out_dir / "report.md", out_dir / "report.csv"
    by_class = per_class.per_class_tables(summary)  # which classes each arm gets right, and an ablation hurts
    class_csv = per_class.write_csv(by_class, out_dir / per_class.CSV_NAME) if by_class else None
    sections = per_class.markdown_section(by_class, render.MARKER)
    from experiments.reporting import search  # a search's study: best trial, importances, figures, --retest

    searched = search.section(dirs[0], out_dir, plots=not args.no_plots, retest_k=args.retest,
                              retest_seeds=args.retest_seeds)
    sections = [*sections, *searched.markdown]
    md_path.write_text(render.render_markdown(summary, dirs, plot_files, sections), encoding="utf-8")
    csv_table.write_csv(summary, csv_path)

    print(render.markdown_table(summary))
    print()
    if summary.primary is not None and summary.primary in summary.metric_columns:
        print(render.interval_table(summary, [summary.primary]))
        print(render.LEGEND)
        print(render.interval_methods_note(summary, [summary.primary]))
        if summary.compared:
            print(render.seed_floor_note(summary))
        print(render.statistics_method(summary))
        for note in render.pairing_notes(summary):
            print(f"- {note}")
        print()
    if class_csv is not None:
        print(per_class.console_text(by_class, class_csv))
        print()
    for line in searched.console:
        print(line)
    print(
        f"{len(summary.completed)} completed, "
        + (f"{len(summary.pruned)} pruned, " if summary.pruned else "")
        + f"{len(summary.failed)} failed, "
        f"{len(summary.incomplete)} missing/incomplete runs in {len(summary.groups)} groups"
    )
    print(f"wrote {md_path}")
    print(f"wrote {csv_path}")
    if class_csv is not None:
        print(f"wrote {class_csv}")
    for path in [*plot_files, *searched.figures]:
        print(f"wrote {path}")

    if not summary.completed:
        _error(f"no completed runs under {where} ({len(records)} failed or incomplete; see {md_path})")
        return EXIT_NO_RUNS
    return EXIT_OK


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into `head`: not an error worth a traceback
        sys.stderr.close()
        sys.exit(0)
