"""Pooling, the study note's three claims: invariance to small shifts, dimension reduction, less overfitting.

The first two are measured here; the third (less overfitting) is measured once, in the overfitting section,
whose small training set is what the claim is about (its ``− pooling`` arm, with an eval-mode train − val gap).
A gap measured here, on 1 500 images for 6 epochs at a learning rate chosen so the unpooled net trains at all,
would be a different and smaller question, and the two sections used to answer it in opposite directions."""

from __future__ import annotations

from experiments.classics import evidence, figures, shift
from experiments.classics.claims import HOLDS, greater, judge, paired
from experiments.classics.context import FULL, QUICK, Budget, Context, Rendered, image
from experiments.classics.jobs import Job, report_job

KEY = "pooling"
TITLE = "Pooling: invariance and dimension reduction"
POOLINGS = ("max", "avg", "stride", "none")
BUDGETS = {
    # 1 500 images, 6 epochs, AdamW lr 0.001 for every arm: at the default 0.004 the unpooled net's 8.4 M-parameter
    # classifier stays at chance (measured), and one learning rate for all keeps the comparison about pooling
    # 325 core-s for 12 runs on the page of 2026-12-07
    FULL: Budget((0, 1, 2), ("data.train_size=1500", "optimizer.lr=0.001"), run_s=27.0),
    QUICK: Budget((0, 1), ("data.train_size=400", "data.val_size=100", "data.test_size=100", "trainer.max_epochs=2",
                           "optimizer.lr=0.001"), run_s=6.0),
}
BASELINE = "pooling=max"
#: pooling=none must need at least this many times max pooling's parameters (its FC layer sees the full map)
PARAMS_FACTOR = 10.0
LARGEST_SHIFT = shift.SHIFTS[-1]


def plan(ctx: Context) -> list[Job]:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    jobs = ctx.sweeps(KEY, ["experiment=pooling", f"pooling={','.join(POOLINGS)}"], budget,
                      runs_per_slice=len(POOLINGS))
    jobs.append(report_job(KEY, "report", [here / "runs"], here / "report", ["--baseline", BASELINE]))
    return jobs


def render(ctx: Context) -> Rendered:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    summary = evidence.load([here / "runs"], baseline=BASELINE)
    groups = {p: evidence.find(summary, f"pooling={p}") for p in POOLINGS}
    scores = {p: {run.path: shift.evaluate_run(run.path) for run in evidence.runs_of(g)} for p, g in groups.items()}

    runs = {p: evidence.runs_of(groups[p]) for p in POOLINGS}
    test_acc = evidence.metric_of("test/acc")

    def at_shift(pooling: str, k: int, which: int):
        return lambda r: (scores[pooling].get(r.path) or {}).get(k, (None, None))[which]

    def drop_of(pooling: str):
        def one(run):
            found = scores[pooling].get(run.path)
            return None if not found else found[0][0] - found[LARGEST_SHIFT][0]
        return one

    rows = []
    for p in POOLINGS:
        g = groups[p]
        params, flops = evidence.metric(g, "params").mean, evidence.metric(g, "flops").mean
        rows.append([p, "—" if params is None else f"{params:,.0f}", "—" if flops is None else f"{flops / 1e6:.1f}",
                     evidence.fmt(evidence.arm(runs[p], test_acc, True)),
                     evidence.fmt(evidence.arm(runs[p], at_shift(p, LARGEST_SHIFT, 0), True)),
                     evidence.fmt(evidence.arm(runs[p], at_shift(p, LARGEST_SHIFT, 1), True)),
                     evidence.fmt(evidence.arm(runs[p], drop_of(p), False))])
    table = evidence.table(["pooling", "parameters", "MFLOPs / image", "test accuracy",
                            f"accuracy, shifted {LARGEST_SHIFT} px", f"prediction unchanged, {LARGEST_SHIFT} px",
                            f"accuracy lost to a {LARGEST_SHIFT} px shift"], rows)
    stages = sorted({k for p in POOLINGS for r in runs[p] for k in r.metrics if k.startswith("test/shift_diff_stage")},
                    key=lambda k: int(k.rsplit("stage", 1)[1]))
    stage_table = evidence.table(
        ["pooling", *(f"stage {k.rsplit('stage', 1)[1]}" for k in stages)],
        [[p, *(evidence.fmt(evidence.arm(runs[p], evidence.metric_of(k), False)) for k in stages)] for p in POOLINGS])
    curves = {p: [(k, evidence.arm(runs[p], at_shift(p, k, 0), True)) for k in shift.SHIFTS] for p in POOLINGS}
    drawn = figures.shift_accuracy(curves, here / "figures" / "shift_accuracy.png", "test accuracy",
                                   "Pooling and small shifts: test images shifted circularly by k px "
                                   "(mean of 4 directions)", chance=evidence.chance(summary))

    params = {p: evidence.metric(groups[p], "params").mean for p in POOLINGS}
    flops = {p: evidence.metric(groups[p], "flops").mean for p in POOLINGS}
    claims = judge([
        greater(f"dimension reduction: without pooling the classifier needs over {PARAMS_FACTOR:g}× max pooling's "
                "parameters", params["none"], None if params["max"] is None else PARAMS_FACTOR * params["max"],
                names=("none", f"{PARAMS_FACTOR:g} × max"), digits=0),
        greater("and more FLOPs per image (every conv runs at full resolution)", flops["none"], flops["max"],
                names=("none", "max"), digits=0),
        paired(f"invariance: a {LARGEST_SHIFT}-pixel shift costs the unpooled net more accuracy than the max-pooled "
               "one", evidence.paired_values(runs["none"], runs["max"], drop_of("none"), drop_of("max")),
               names=("drop without pooling", "drop with max"), asserted=False),
    ])
    shift_link = ctx.figure(drawn, "pooling_shift_accuracy")
    bars = ctx.figure(here / "report" / "bars_test_acc.png", "pooling_test_acc")
    body = f"""
`experiment=pooling`: the default 3-stage CNN down-sampling by max pooling, average pooling, a learned stride-2
convolution (`stride`, Springenberg et al. 2015), or not at all (`none`: every convolution keeps the 32×32
resolution and the fully connected layer sees the whole map), all at AdamW learning rate 0.001 (at the default
0.004 the unpooled net's 8.4 M-parameter classifier does not train at all); seeds {budget.seed_list}, budget
`{' '.join(budget.overrides)}` (the experiment's 6 epochs unless that says otherwise). Shifted accuracy: each
run's best checkpoint on its own test images translated circularly by k pixels, averaged over the four
directions (src/experiments/classics/shift.py; `python -m experiments.evaluate RUN data.test_shift=k` re-tests a
run on images shifted with edge replication instead); "prediction unchanged" is Zhang's (2019) consistency.

{table}

**Where the invariance is made.** The feature maps themselves, stage by stage: for each test image and its copy
shifted circularly by one pixel (four directions), ‖f(x) − f(shift x)‖ / ‖f(x)‖ of each stage's output at the same
positions (0: the stage ignores where the pattern is; about 1.4: unrelated maps), mean over 256 test images, then
the mean and 95 % t interval over seeds (`test/shift_diff_stage<i>`, written by every `experiment=pooling` run's
invariance diagnostic, src/experiments/diagnostics/invariance.py):

{stage_table}

{image(shift_link, "test accuracy against shift", "Test accuracy against the shift of the test images, mean and "
       "95 % interval over seeds (bounded to [0, 1]; dashed: chance), computed from the runs' checkpoints, drawn by "
       "src/experiments/classics.")}

{image(bars, "test accuracy per pooling", "Unshifted test accuracy, 95 % interval over seeds "
       "(`python -m experiments.report`).")}

**Less overfitting**, pooling's third claim, is measured once, in the overfitting section below, by its
`− pooling (pooling=none)` arm: there the training set is small enough (a few hundred images, 20 epochs) for the
train − validation gap to be the quantity that matters, and the training accuracy is measured in eval mode
like the validation accuracy. This section's budget (1 500 images, 6 epochs, a learning rate low enough for the
unpooled net to train at all) measures invariance and cost, not overfitting.

**Published.** Scherer et al. (2010) found max pooling better than subsampling (average) for object
recognition; Springenberg et al. (2015) replaced every max pooling by a stride-2 convolution with little or no
loss on CIFAR-10. Zhang (2019) measured that pooled networks are far less shift-invariant than assumed: small
shifts change the prediction of a sizeable fraction of images, because striding aliases. **Where ours differ.**
Our shapes are placed at random in every image, so the training data already teach translation; what pooling
adds is measured on top of that.
"""
    status = [c.status for c in claims]
    parts = ["pooling cuts parameters and FLOPs" if status[0] == status[1] == HOLDS else "the cost ordering failed",
             "and buys shift robustness" if status[2] == HOLDS else
             f"its shift robustness is {status[2]} at these seeds",
             "(overfitting: see the overfitting section)"]
    return Rendered(KEY, TITLE, body, claims, ", ".join(parts[:2]) + " " + parts[2])
