"""He et al. 2016: the CIFAR ResNets' parameter counts, and the degradation problem residual shortcuts cure."""

from __future__ import annotations

import json
import math

from experiments.classics import evidence
from experiments.classics.analytic import CIFAR_GEOMETRY, HE_TABLE6_ERROR, HE_TABLE6_PARAMS_M
from experiments.classics.claims import Claim, greater, within
from experiments.classics.context import FULL, QUICK, Budget, Context, Rendered, image
from experiments.classics.jobs import Job, inspect_job, report_job

KEY = "depth"
TITLE = "Depth: plain vs residual (He et al. 2016)"
BUDGETS = {
    # 2 000 images of 16x16 px, 5 epochs, width 8 (the experiment's own budget with 2 000 instead of 3 000 images)
    FULL: Budget((0, 1, 2), ("data.train_size=2000",), run_s=26.0),
    QUICK: Budget((0, 1), ("data.train_size=400", "data.val_size=100", "data.test_size=100",
                           "trainer.max_epochs=2"), run_s=8.0),
}
BASELINE = "model.depth=56,model.residual=False"  # as Hydra records the grid value
ARMS = {  # label -> overrides of the arm in the sweep
    "plain-20": ("model.depth=20", "model.residual=False"),
    "plain-56": ("model.depth=56", "model.residual=False"),
    "ResNet-20": ("model.depth=20", "model.residual=True"),
    "ResNet-56": ("model.depth=56", "model.residual=True"),
}
#: relative tolerance on the parameter counts: Table 6 prints two significant digits
PARAMS_TOLERANCE = 0.02
#: orders of magnitude by which plain-56's first/last gradient ratio at init departs from 1 more than ResNet-56's
SPREAD = 1.0


def plan(ctx: Context) -> list[Job]:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    jobs = [
        inspect_job(KEY, f"resnet{d}", ["model=resnet", f"model.depth={d}", *CIFAR_GEOMETRY],
                    here / "inspect" / f"resnet{d}.json")
        for d in HE_TABLE6_PARAMS_M
    ]
    jobs += ctx.sweeps(KEY, ["experiment=plain_vs_residual"], budget, runs_per_slice=4)
    jobs.append(report_job(KEY, "report", [here / "runs"], here / "report", ["--baseline", BASELINE]))
    return jobs


def _inspected(ctx: Context, depth: int) -> dict | None:
    path = ctx.dir(KEY) / "inspect" / f"resnet{depth}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def render(ctx: Context) -> Rendered:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    claims: list[Claim] = []

    # -- Table 6 parameter counts, from `experiments.inspect`
    rows = []
    for depth, published in HE_TABLE6_PARAMS_M.items():
        found = _inspected(ctx, depth)
        params = found["total_params"] if found else None
        flops = found["total_flops"] if found else None
        claim = within(f"ResNet-{depth} has {published} M parameters (Table 6)",
                       None if params is None else params / 1e6, published, PARAMS_TOLERANCE)
        claims.append(claim)
        rows.append([f"ResNet-{depth}", "—" if params is None else f"{params:,}", f"{published} M",
                     "—" if flops is None else f"{flops / 1e6:.1f}", f"{HE_TABLE6_ERROR[depth]} %", claim.mark])
    params_table = evidence.table(
        ["network", "parameters (ours)", "parameters (Table 6)", "MFLOPs / image (ours)", "test error (Table 6)",
         f"within {PARAMS_TOLERANCE:.0%}"], rows)

    # -- degradation: training error of plain and residual nets
    summary = evidence.load([here / "runs"], baseline=BASELINE)
    groups = {label: evidence.find(summary, *arm) for label, arm in ARMS.items()}

    def train_error(label: str):
        return evidence.over_runs(evidence.runs_of(groups[label]), lambda r: 1.0 - r.metrics["train/acc"]
                                  if "train/acc" in r.metrics else None)

    def test_error(label: str):
        return evidence.over_runs(evidence.runs_of(groups[label]), lambda r: 1.0 - r.metrics["test/acc"]
                                  if "test/acc" in r.metrics else None)

    errors = {label: (train_error(label), test_error(label)) for label in ARMS}
    rows = []
    for label, (train, test) in errors.items():
        group = groups[label]
        pairing = group.pairing if group is not None else None
        diff = pairing.diffs.get("train/acc") if pairing is not None else None
        shown = "baseline" if label == "plain-56" else "—"
        if diff is not None and diff.mean is not None:
            shown = evidence.fmt(type(diff)(diff.n, -diff.mean, diff.std, diff.half_width), percent=True, digits=1)
        flow = evidence.over_runs(evidence.runs_of(group), lambda r: r.vanishing_ratio)
        rows.append([label, evidence.fmt(train, percent=True, digits=1), evidence.fmt(test, percent=True, digits=1),
                     shown, evidence.fmt(flow, 2)])
    training_table = evidence.table(
        ["network", "final training error", "test error", "Δ training error vs plain-56 (paired by seed)",
         "first/last gradient at init"], rows)

    def spread(label: str) -> float | None:
        """Orders of magnitude between the first and the last layer's gradient at initialisation."""
        return evidence.over_runs(evidence.runs_of(groups[label]), lambda r: abs(math.log10(r.vanishing_ratio))
                                  if r.vanishing_ratio else None).mean

    claims += [
        greater("the deeper plain net trains worse: plain-56's final training error exceeds plain-20's",
                errors["plain-56"][0].mean, errors["plain-20"][0].mean, names=("plain-56", "plain-20")),
        greater("shortcuts cure it: ResNet-56's final training error is below plain-56's",
                errors["plain-56"][0].mean, errors["ResNet-56"][0].mean, names=("plain-56", "ResNet-56")),
        greater("and it generalises better: ResNet-56's test error is below plain-56's",
                errors["plain-56"][1].mean, errors["ResNet-56"][1].mean, names=("plain-56", "ResNet-56"),
                asserted=False),
        greater("with shortcuts depth helps: ResNet-56's final training error is below ResNet-20's",
                errors["ResNet-20"][0].mean, errors["ResNet-56"][0].mean, names=("ResNet-20", "ResNet-56"),
                asserted=False),
        greater(f"at initialisation the plain-56 net's layer gradients span over {SPREAD} more orders of magnitude "
                "(first vs last layer) than ResNet-56's", spread("plain-56"),
                None if spread("ResNet-56") is None else spread("ResNet-56") + SPREAD,
                names=("plain-56 |log10 ratio|", f"ResNet-56's + {SPREAD}")),
    ]
    curves = ctx.figure(here / "report" / "curves_train_loss.png", "depth_train_loss")
    seeds = evidence.seeds(evidence.runs_of(groups["plain-56"]))
    budget_text = " ".join(budget.overrides) or "the experiment's own budget"
    body = f"""
**Parameter counts.** `python -m experiments.inspect model=resnet model.depth=D {' '.join(CIFAR_GEOMETRY)}` builds
each CIFAR ResNet at CIFAR-10's geometry (32×32 RGB in, 10 classes out; the embedded data stands in, nothing is
read) and counts its parameters: they match He et al.'s Table 6 to the digits it prints.

{params_table}

**The degradation problem.** `experiment=plain_vs_residual` trains the same stacks of 3×3 convolutions with and
without identity shortcuts (option A), at depth 20 and 56, on the embedded shapes (16×16 px, width 8; budget
`{budget_text}`, seeds {seeds}). He et al. (Fig. 1 and Fig. 6) report that the 56-layer *plain* net has a
higher training error than the 20-layer one throughout training on CIFAR-10, so the problem is optimisation,
not overfitting, and that with shortcuts the deeper net is at least as good (Table 6: 6.97 % vs 8.75 % test
error).

{training_table}

"First/last gradient at init" is the gradients diagnostic's `vanishing_ratio` (weight-gradient norm of the first
convolution over the last layer's, first batch, before any update), a measure of how evenly the gradient
reaches every depth when training starts; both nets have batch norm, which He et al. credit for keeping
the plain nets' signals from vanishing, so their explanation of degradation is optimisation difficulty.

{image(curves, "training loss of plain and residual nets", "Training loss per epoch, mean ± std over seeds "
       "(drawn by `python -m experiments.report`).")}

**Where ours differ.** Our nets are 8 channels wide instead of 16, see 16×16 px shapes instead of CIFAR-10 and
train for minutes instead of 64k iterations, so absolute errors are not comparable with Table 6; what carries
over is the ordering within the same budget.
"""
    degradation = [c for c in claims if "training error" in c.statement and c.asserted]
    why = ("parameter counts match Table 6; " + ("plain-56 trains worse than plain-20 and shortcuts fix it"
           if all(c.holds for c in degradation) else "the training-error ordering is not (fully) there at this budget"))
    return Rendered(KEY, TITLE, body, claims, why)
