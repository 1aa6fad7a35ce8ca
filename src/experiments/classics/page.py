"""``docs/classics.md``: the sections, their claims and verdicts, the closing note, the references.

The page is written, never edited by hand: every number, figure and command on it comes from the
invocation of ``python -m experiments.classics`` that wrote it (the closing note says which budget and how
long it took). Published numbers and citations are the only fixed text, and they live in the sections.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from experiments.classics.claims import verdict
from experiments.classics.context import QUICK, Context, Rendered, commands
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

_MARKS = {True: "✅", False: "❌", None: "❔"}
_REPORTED = " *(compared, not asserted by the tests)*"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, punctuation dropped."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def _tally(part: Rendered) -> str:
    held = sum(1 for c in part.claims if c.holds)
    return f"{held} of {len(part.claims)} claims hold"


def section_text(number: int, part: Rendered, jobs: Sequence[Job], ctx: Context) -> str:
    claims = "\n".join(f"- {_MARKS[c.holds]} {c.statement} — {c.evidence}" + ("" if c.asserted else _REPORTED)
                       for c in part.claims)
    return (
        f"## {number}. {part.title}\n\n"
        f"Commands, as `make classics` ran them (two at a time, one torch thread each):\n\n"
        f"{commands(jobs, ctx.rel) if jobs else '*(no command: measured in-process)*'}\n"
        f"{part.body.strip()}\n\n"
        f"**Claims** (✅ holds, ❌ does not, ❔ not checked; margins are part of the claim):\n\n{claims}\n\n"
        f"**Verdict: {verdict(part.claims)}** ({_tally(part)}) — {part.why}.\n"
    )


def budget_table(parts: Sequence[Rendered], ctx: Context) -> str:
    """Per section: commands, the seconds planned for them on one core, the seconds they took, failures."""
    rows = []
    for part in parts:
        jobs = ctx.jobs.get(part.key, [])
        planned = sum(j.estimate_s for j in jobs)
        measured = [j.wall_s for j in jobs if j.wall_s is not None]
        failed = sum(1 for j in jobs if j.returncode not in (None, 0))
        rows.append(f"| {part.title} | {len(jobs)} | {planned:.0f} | "
                    f"{sum(measured):.0f} | {failed} |" if measured else
                    f"| {part.title} | {len(jobs)} | {planned:.0f} | — | {failed} |")
    every = [j for p in parts for j in ctx.jobs.get(p.key, [])]
    measured = [j.wall_s for j in every if j.wall_s is not None]
    rows.append(f"| **all** | {len(every)} | {sum(j.estimate_s for j in every):.0f} | "
                f"{sum(measured):.0f} | {sum(1 for j in every if j.returncode not in (None, 0))} |")
    head = ("| section | commands | planned s (one core) | measured s (sum over commands) | failed |\n"
            "|---|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(rows)


def render(ctx: Context, parts: Sequence[Rendered], wall_s: float | None, machine: str) -> str:
    quick = ctx.budget == QUICK
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

**How to read the numbers.** `0.812 [0.790, 0.834] (n=3)` is the mean over n seeds with its 95 % Student-t
confidence interval, mean ± t(0.975, n−1)·s/√n, as `python -m experiments.report` computes it; Δ columns are
differences from a baseline arm *paired by seed* (the report's `--baseline`), and "best lr" arms were chosen
on validation accuracy only (`--best-of optimizer.lr`), so their test numbers are fair. A claim is an ordering
with a stated margin. `tests/test_classics.py` checks the claims that need no training on every test run, and
in its slow tests (`make test-all`) reruns each section at this page's budget and fails when an asserted claim
no longer holds; claims marked *compared, not asserted* set our result against a published one that a budget
this small may or may not reproduce. Our data and budgets are far smaller than the papers': what should carry
over is the *direction* of each effect, not its size.

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
