"""``docs/classics.md``: the sections, their claims and verdicts, the closing note, the references.

The page is written, never edited by hand: every number, figure and command on it comes from the
invocation of ``python -m experiments.classics`` that wrote it (the closing note says which budget and how
long it took). Published numbers and citations are the only fixed text, and they live in the sections.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from experiments.classics.claims import ALPHA, CONTRADICTED, FAILS, HOLDS, NOT_CHECKED, UNRESOLVED, tally, verdict
from experiments.classics.context import PAGE_BUDGET_MIN, QUICK, Context, Rendered, commands
from experiments.classics.jobs import Job

REFERENCES = (
    "He, Zhang, Ren, Sun. *Deep Residual Learning for Image Recognition*. CVPR 2016 (arXiv:1512.03385).",
    "He, Zhang, Ren, Sun. *Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet "
    "Classification*. ICCV 2015.",
    "Glorot, Bengio. *Understanding the difficulty of training deep feedforward neural networks*. AISTATS 2010.",
    "Glorot, Bordes, Bengio. *Deep Sparse Rectifier Neural Networks*. AISTATS 2011.",
    "Goodfellow, Warde-Farley, Mirza, Courville, Bengio. *Maxout Networks*. ICML 2013.",
    "Ioffe, Szegedy. *Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate "
    "Shift*. ICML 2015.",
    "Golik, Doetsch, Ney. *Cross-Entropy vs. Squared Error Training: a Theoretical and Experimental Comparison*. "
    "Interspeech 2013.",
    "Nielsen. *Neural Networks and Deep Learning*, chapter 3. Determination Press, 2015.",
    "Scherer, Müller, Behnke. *Evaluation of Pooling Operations in Convolutional Architectures for Object "
    "Recognition*. ICANN 2010.",
    "Springenberg, Dosovitskiy, Brox, Riedmiller. *Striving for Simplicity: The All Convolutional Net*. ICLR 2015 "
    "(workshop).",
    "Zhang. *Making Convolutional Networks Shift-Invariant Again*. ICML 2019.",
    "Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov. *Dropout: A Simple Way to Prevent Neural Networks "
    "from Overfitting*. JMLR 15, 2014.",
    "Krogh, Hertz. *A Simple Weight Decay Can Improve Generalization*. NIPS 1991.",
    "Long, Shelhamer, Darrell. *Fully Convolutional Networks for Semantic Segmentation*. CVPR 2015.",
    "Badrinarayanan, Kendall, Cipolla. *SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image "
    "Segmentation*. TPAMI 2017.",
    "Yu, Koltun. *Multi-Scale Context Aggregation by Dilated Convolutions*. ICLR 2016.",
    "Luo, Li, Urtasun, Zemel. *Understanding the Effective Receptive Field in Deep Convolutional Neural Networks*. "
    "NIPS 2016.",
)

#: the mark of each claim status; "not resolved" is grey (⚪), its own verdict, never a failure or a pass
_MARKS = {HOLDS: "✅", CONTRADICTED: "❌", FAILS: "❌", UNRESOLVED: "⚪", NOT_CHECKED: "❔"}
_REPORTED = " *(compared, not asserted by the tests)*"
_LEGEND = (f"✅ holds, ❌ contradicted or does not hold, ⚪ not resolved at this page's seeds (grey: neither; the "
           f"planner's seed count is given), ❔ not checked; margins are part of the claim; comparative claims are "
           f"paired by seed and judged at α = {ALPHA} as one family per section")


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, punctuation dropped."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def _tally(part: Rendered) -> str:
    return tally(part.claims)


def _claim_line(claim) -> str:
    shown = claim.statement if claim.status != UNRESOLVED else f"*{claim.statement}*"  # GitHub drops colours
    return f"- {_MARKS[claim.status]} {shown} — {claim.evidence}" + ("" if claim.asserted else _REPORTED)


def section_text(number: int, part: Rendered, jobs: Sequence[Job], ctx: Context) -> str:
    claims = "\n".join(_claim_line(c) for c in part.claims)
    return (
        f"## {number}. {part.title}\n\n"
        f"Commands, as `make classics` ran them (two at a time, one torch thread each):\n\n"
        f"{commands(jobs, ctx.rel) if jobs else '*(no command: measured in-process)*'}\n"
        f"{part.body.strip()}\n\n"
        f"**Claims** ({_LEGEND}):\n\n{claims}\n\n"
        f"**Verdict: {verdict(part.claims)}** ({_tally(part)}) — {part.why}.\n"
    )


def budget_table(parts: Sequence[Rendered], ctx: Context) -> str:
    """Per section: its seeds, commands, the seconds planned for them on one core, the seconds they took, failures."""
    rows = []
    for part in parts:
        jobs = ctx.jobs.get(part.key, [])
        planned = sum(j.estimate_s for j in jobs)
        measured = [j.wall_s for j in jobs if j.wall_s is not None]
        failed = sum(1 for j in jobs if j.returncode not in (None, 0))
        budget = ctx.picked.get(part.key)
        seeds = "—" if budget is None else f"{len(budget.seeds)} ({budget.seed_list})"
        took = f"{sum(measured):.0f}" if measured else "—"
        rows.append(f"| {part.title} | {seeds} | {len(jobs)} | {planned:.0f} | {took} | {failed} |")
    every = [j for p in parts for j in ctx.jobs.get(p.key, [])]
    measured = [j.wall_s for j in every if j.wall_s is not None]
    rows.append(f"| **all** | | {len(every)} | {sum(j.estimate_s for j in every):.0f} | "
                f"{sum(measured):.0f} | {sum(1 for j in every if j.returncode not in (None, 0))} |")
    head = ("| section | seeds | commands | planned s (one core) | measured s (sum over commands) | failed |\n"
            "|---|---:|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(rows)


def seeds_table(parts: Sequence[Rendered]) -> str:
    """Every comparative claim: its paired Δ with the interval it was judged by, Holm p, seeds, the planner's ask."""
    rows = []
    for part in parts:
        for claim in part.claims:
            j = claim.judgement
            if j is None:
                continue
            interval = "—" if j.low is None or j.high is None else f"[{j.low:.3g}, {j.high:.3g}]"
            rows.append(f"| {part.key} | {_MARKS[claim.status]} {claim.statement} | "
                        f"{'—' if j.mean is None else f'{j.mean:.3g}'} {interval} | "
                        f"{'—' if j.p_holm is None else f'{j.p_holm:.2g}'} | {j.n} | "
                        f"{(j.seeds_needed or '—') if claim.status == UNRESOLVED else '—'} |")
    if not rows:
        return "*(no comparative claim)*"
    head = ("| section | claim | Δ [interval at 1 − α/m] | Holm p | seeds | seeds the planner asks for |\n"
            "|---|---|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(rows)


def reading_guide() -> str:
    """How to read the page's numbers; the interval methods are named by the code that computes them."""
    from experiments.reporting.inference import seed_interval_method

    bounded3, bounded20 = seed_interval_method(3, True), seed_interval_method(20, True)
    return f"""**How to read the numbers.** `0.812 [0.790, 0.834] (n=3)` is the mean over n seeds with its 95 %
interval across seeds, as `python -m experiments.report` computes it: for an accuracy or IoU (bounded to [0, 1])
a {bounded3} interval below 20 seeds and a {bounded20} from 20 on, so it never leaves [0, 1]; for any other
number a Student t interval. Δ columns are differences between two arms *paired by seed* (the same
initialisation stream and data order on both sides) with their 95 % paired t interval; "best lr" arms were
chosen on validation accuracy only (`--best-of optimizer.lr`), so their test numbers are fair.

**How a claim is judged.** A claim that compares trained arms is a paired test: the per-seed differences
left − right must exceed the claim's margin. The claims of one section that compare trained arms form one
family of m tests: a claim **holds** (✅) only when its paired t-test p-value, Holm-adjusted over the family, is
below α = {ALPHA} *and* its paired t interval at the Bonferroni level 1 − α/m lies above the margin (that interval
is the one printed with the claim); it is **contradicted** (❌) when that interval lies below the margin; otherwise
it is **not resolved** at this page's seeds (⚪, in italics), with the number of seeds the planner
(`python -m experiments.report DIR --plan`: power 0.8 at level α/m for the observed effect) says would resolve
it. The exact sign-flip p is printed as a check: it cannot fall below 2^(1−n), so it cannot pass α below 6
seeds. Claims about numbers that do not depend on the seed (parameter counts, receptive fields, an
initialisation, a formula) are exact checks: ✅ or ❌. `tests/test_classics.py` checks the exact claims on every
test run, and in its slow tests (`make test-all`) reruns each section at this page's budget and fails when an
asserted claim is contradicted, does not hold or cannot be checked; claims marked *compared, not asserted* set
our result against a published one that a budget this small may or may not reproduce. Our data and budgets are
far smaller than the papers': what should carry over is the *direction* of each effect, not its size."""


def render(ctx: Context, parts: Sequence[Rendered], wall_s: float | None, machine: str) -> str:
    quick = ctx.budget == QUICK
    reading = reading_guide()
    toc = "\n".join(f"{i}. [{p.title}](#{_anchor(f'{i}. {p.title}')})" for i, p in enumerate(parts, 1))
    verdicts = "\n".join(f"| [{p.title}](#{_anchor(f'{i}. {p.title}')}) | **{verdict(p.claims)}** "
                         f"({_tally(p)}) | {p.why} |" for i, p in enumerate(parts, 1))
    warning = ("\n> **Smoke budget (`--quick`)**: a few hundred images, one or two epochs, two seeds. The page "
               "exercises every command, figure and claim; its numbers are not evidence.\n" if quick else "")
    sections = "\n".join(section_text(i, p, ctx.jobs.get(p.key, []), ctx) for i, p in enumerate(parts, 1))
    references = "\n".join(f"- {ref}" for ref in REFERENCES)
    planned = sum(j.estimate_s for p in parts for j in ctx.jobs.get(p.key, []))
    return f"""# The classics, reproduced
{warning}
Each lesson of the study note, run by this framework on the embedded procedural data, next to the numbers
the original papers published. Everything on this page — every number, interval, figure and command — was
written by `make classics` (`python -m experiments.classics`, budget `{ctx.budget}`); nothing was edited by
hand. Regenerate it with `make classics` (`make classics ARGS=--quick` for a smoke run into
`outputs/classics-quick/`).

{reading}

{toc}

{sections}
## Closing note

| lesson | verdict | why |
|---|---|---|
{verdicts}

`make classics` wall time: **{_minutes(wall_s)}** on {machine}, budget `{ctx.budget}` (runs and reports two at a
time, one torch thread each; timings, figures and this page included); planned: {_minutes(planned / 2)} of
commands on two cores (`python -m experiments.classics --plan` prints the plan).

{budget_table(parts, ctx)}

**Seeds per claim.** Every comparative claim, the paired difference it was judged by, and — where it is not
resolved — the seeds the planner says would resolve the observed effect (power 0.8 at level α/m). Raise a
section's seeds with `python -m experiments.classics --seeds SECTION=N` (`--plan` prints what that costs against
the {PAGE_BUDGET_MIN:.0f}-minute budget); power from an observed effect is optimistic, so treat the count as a
floor.

{seeds_table(parts)}

## References

{references}
"""


def write(ctx: Context, parts: Sequence[Rendered], wall_s: float | None, machine: str) -> Path:
    """Write ``classics.md`` and ``claims.json`` (what the slow tests read) and return the page's path."""
    ctx.docs.mkdir(parents=True, exist_ok=True)
    page = ctx.docs / "classics.md"
    page.write_text(render(ctx, parts, wall_s, machine), encoding="utf-8")
    claims = {p.key: {"verdict": verdict(p.claims), "claims": [c.as_dict() for c in p.claims]} for p in parts}
    (ctx.out / "claims.json").write_text(json.dumps(claims, indent=2), encoding="utf-8")
    return page
