"""``python -m experiments.classics [--quick] [--out DIR] [--docs DIR] [--only KEYS] [--seeds KEY=N] [--plan]
[--render-only] [--reuse]``.

Order of work: the in-process measurements that time something run first, alone on the machine; then every
section's runs and inspections, two at a time; then the reports; then each section reads its runs back and
the page is written. ``--render-only`` re-reads existing outputs (to change the page's wording without
training again); ``--reuse`` keeps completed runs of an earlier invocation (``resume=true``: interrupted runs
continue, completed ones are skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from experiments.classics import jobs as job_runner
from experiments.classics import page, sections
from experiments.classics.context import FULL, PAGE_BUDGET_MIN, QUICK, REPO, Context


def _parser() -> argparse.ArgumentParser:
    keys = ", ".join(sections.KEYS)
    parser = argparse.ArgumentParser(
        prog="python -m experiments.classics",
        description="Regenerate every number and figure of docs/classics.md with real runs of the framework.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke budget (two seeds, tiny data, 1-2 epochs); default out outputs/classics-quick, "
                             "page written there too")
    parser.add_argument("--out", type=Path, default=None,
                        help="where runs, reports and logs go (default outputs/classics, or outputs/classics-quick)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="where classics.md and images/classics/ go (default docs/; <out>/docs with --quick or "
                             "--only, so a smoke or partial run never replaces the committed page)")
    parser.add_argument("--only", default=None, metavar="KEYS", help=f"comma-separated sections among: {keys}")
    parser.add_argument("--slots", type=int, default=2, help="commands run at once (default 2: one per core)")
    parser.add_argument("--render-only", action="store_true", help="write the page from existing outputs")
    parser.add_argument("--plan", action="store_true",
                        help="print every command with its planned seconds and the planned wall time; run nothing")
    parser.add_argument("--reuse", action="store_true",
                        help="keep completed runs of an earlier invocation into the same --out (resume=true)")
    parser.add_argument("--seeds", action="append", default=[], metavar="KEY=N",
                        help="run section KEY with seeds 0..N-1 instead of its budget's (repeatable; e.g. the seeds "
                             "--plan says an unresolved claim needs)")
    return parser


def _seed_counts(specs: list[str]) -> dict[str, int] | str:
    """``["pooling=6"]`` -> ``{"pooling": 6}``; a one-sentence error for a bad spec."""
    counts = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or key not in sections.KEYS or not value.isdigit() or int(value) < 1:
            return (f"error: --seeds={spec} is not SECTION=N with a section among {', '.join(sections.KEYS)} and N "
                    f"a positive whole number; use e.g. --seeds pooling=6")
        counts[key] = int(value)
    return counts


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def _unresolved(out: Path) -> dict[str, list[dict]]:
    """The comparative claims an earlier invocation into ``out`` left unresolved (its ``claims.json``), by section."""
    try:
        recorded = json.loads((out / "claims.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: [c for c in part.get("claims", []) if c.get("status") == "not resolved"]
            for key, part in recorded.items()}


def _print_plan(ctx: Context, chosen: list, slots: int) -> int:
    """The budget, before spending it: each section's seeds and commands with their planned seconds, the wall time
    ``slots`` cores should take against the page's budget, and what an earlier run's unresolved claims would need."""
    total = 0.0
    waiting = _unresolved(ctx.out)
    for section in chosen:
        ctx.section = section.KEY
        jobs = section.plan(ctx)
        ctx.jobs[section.KEY] = jobs  # a later section may measure an earlier one's runs (landscape)
        seconds = sum(j.estimate_s for j in jobs)
        total += seconds
        budget = ctx.picked.get(section.KEY)
        seeds = f"seeds {budget.seed_list} (n={len(budget.seeds)})" if budget is not None else "no seeds"
        print(f"{section.KEY}: {seeds}, {len(jobs)} commands, {seconds:.0f} s planned on one core")
        for job in jobs:
            print(f"  {job.estimate_s:6.0f} s  {job.command}")
        for claim in waiting.get(section.KEY, []):
            judged = claim.get("judgement") or {}
            need = judged.get("seeds_needed")
            print(f"  unresolved at n={judged.get('n')}: {claim['statement']} -> "
                  + (f"the planner asks for {need} seeds (--seeds {section.KEY}={need})" if need else
                     "the planner has no effect to plan from"))
    ctx.section = None
    minutes = total / max(1, slots) / 60
    verdict = "within" if minutes <= PAGE_BUDGET_MIN else "OVER"
    print(f"planned: {total:.0f} core-seconds, about {minutes:.0f} min on {slots} cores, {verdict} the "
          f"{PAGE_BUDGET_MIN:.0f}-min budget of `make classics` on 2 cores (budget {ctx.budget}; plus the timings, "
          f"reports' plots and the page, about a minute)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    budget = QUICK if args.quick else FULL
    out = (args.out or Path("outputs/classics-quick" if args.quick else "outputs/classics")).resolve()
    # only a complete full-budget run may replace the committed page
    docs = (args.docs or (out / "docs" if args.quick or args.only else REPO / "docs")).resolve()
    keys = sections.KEYS
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = [k for k in keys if k not in sections.KEYS]
        if unknown:
            print(f"error: --only={args.only} names unknown section(s) {', '.join(unknown)}; use some of "
                  f"{', '.join(sections.KEYS)}", file=sys.stderr)
            return 2
    counts = _seed_counts(args.seeds)
    if isinstance(counts, str):
        print(counts, file=sys.stderr)
        return 2
    chosen = sections.load(keys)
    ctx = Context(budget, out, docs, seed_counts=counts)
    record = out / "jobs.json"
    machine = _machine()

    if args.render_only:
        ran, meta = job_runner.load(record)
        wall_s, recorded, machine = meta.get("wall_s"), meta.get("budget"), meta.get("machine", machine)
        ctx.seed_counts = {**(meta.get("seed_counts") or {}), **counts}
        if recorded is not None and recorded != budget:
            print(f"error: {out} holds a '{recorded}' run; add or drop --quick to match", file=sys.stderr)
            return 2
        for job in ran:
            ctx.jobs.setdefault(job.section, []).append(job)
    elif args.plan:
        return _print_plan(ctx, chosen, args.slots)
    else:
        start = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        for section in chosen:
            if not args.reuse and ctx.dir(section.KEY).exists():
                shutil.rmtree(ctx.dir(section.KEY))
            ctx.section = section.KEY
            planned = section.plan(ctx)
            if args.reuse:  # continue the sweeps an earlier invocation started (resume=true needs one there)
                for job in planned:
                    sweep = next((a.split("=", 1)[1] for a in job.args if a.startswith("hydra.sweep.dir=")), None)
                    if sweep is not None and Path(sweep).is_dir():
                        job.args.append("resume=true")
            ctx.jobs[section.KEY] = planned
        print(f"classics ({budget}): {sum(len(j) for j in ctx.jobs.values())} commands into {out}", flush=True)
        for section in chosen:  # timings first, alone on the machine
            if hasattr(section, "measure"):
                print(f"  measuring {section.KEY} ...", flush=True)
                ctx.section = section.KEY
                section.measure(ctx)
        every = [job for jobs in ctx.jobs.values() for job in jobs]
        for phase in (1, 2):
            job_runner.run_all([j for j in every if j.phase == phase], REPO, slots=args.slots)
        wall_s = time.perf_counter() - start
        job_runner.save(every, record, wall_s, budget, machine, {"seed_counts": counts})

    if not args.render_only:  # figures are named <section>_<what>.png: a section's old ones go with its old runs
        for section in chosen:
            for stale in ctx.images.glob(f"{section.KEY}_*.png"):
                stale.unlink()
    parts = []
    for section in chosen:
        print(f"  rendering {section.KEY} ...", flush=True)
        ctx.section = section.KEY
        parts.append(section.render(ctx))
    ctx.section = None
    if not args.render_only:
        wall_s = time.perf_counter() - start  # the figures and reading back are part of the regeneration
        job_runner.save([j for jobs in ctx.jobs.values() for j in jobs], record, wall_s, budget, machine,
                        {"seed_counts": ctx.seed_counts})
    written = page.write(ctx, parts, wall_s, machine)
    failed = [j for jobs in ctx.jobs.values() for j in jobs if j.returncode not in (None, 0)]
    print(f"wrote {written} ({len(parts)} sections, wall time {(wall_s or 0) / 60:.1f} min)")
    for job in failed:
        print(f"  failed: {job.section}/{job.name} (exit {job.returncode}), log {job.log}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
