"""Why it trains: the loss landscape of plain vs residual nets, curvature with and without batch norm, and the edge of
stability (Li et al. 2018; Ghorbani et al. 2019; Cohen et al. 2021).

Its own runs, so that ``--only landscape`` regenerates it alone: plain-32 and ResNet-32 at the depth section's
budget (where both learn and the plain net ends worse), the ReLU net of the batch-norm section with and without
batch norm, and full-batch gradient descent at two learning rates with the sharpness tracked every few steps.
``python -m experiments.landscape`` then measures every trained run (phase 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from experiments.classics import evidence
from experiments.classics.claims import HOLDS, judge, paired, within
from experiments.classics.context import FULL, QUICK, Budget, Context, Rendered, image
from experiments.classics.jobs import Job
from experiments.classics.sections.depth import CLEAN_SHAPES
from experiments.reporting import RunResult

KEY = "landscape"
TITLE = "Why it trains: loss landscape and curvature (Li et al. 2018; Cohen et al. 2021)"
DEEP = 32
BUDGETS = {
    # seeds for the depth and batch-norm parts; the edge-of-stability part uses the first two (one full-batch run
    # per learning rate and seed is what Cohen et al.'s figures show)
    FULL: Budget((0, 1, 2), (), run_s=45.0),
    QUICK: Budget((0, 1), ("data.train_size=400", "data.val_size=100", "data.test_size=100", "trainer.max_epochs=2"),
                  run_s=10.0),
}
#: the depth part: the depth section's budget (experiment's cpu budget on the cleaner shapes), 32 layers
DEPTH = ("experiment=plain_vs_residual", *CLEAN_SHAPES, f"model.depth={DEEP}", "model.residual=true,false")
#: the batch-norm part: the batch-norm section's ReLU net and budget
BATCHNORM = ("experiment=sigmoid_vs_relu", "activation=relu", "norm=batch,none", "data.train_size=3000",
             "trainer.max_epochs=5")
#: the edge-of-stability part: full-batch gradient descent at two rates (2/η = 6.7 and 5); from the default init the
#: sharpness starts near 5 and rises, so these rates reach 2/η within the run
RATES = (0.3, 0.4)
EOS = ("experiment=edge_of_stability", f"optimizer.lr={','.join(map(str, RATES))}", "trainer.max_epochs=250")
EOS_QUICK = ("trainer.max_epochs=40",)
#: the landscape of the depth runs: a coarser grid than the default (a 32-layer net costs more per evaluation)
DEPTH_LANDSCAPE = ("--images", "128", "--curvature-images", "128", "--grid", "9", "--slice-points", "13",
                   "--interpolation-points", "13", "--no-progress")
#: curvature only, for the batch-norm runs
CURVATURE_ONLY = ("--grid", "0", "--slice-points", "1", "--interpolation-points", "0", "--no-progress")
#: the sharpness settles where? the median of the last third of the run's measurements
SETTLE_FRACTION = 1 / 3
EOS_TOLERANCE = 0.20
RADIUS = 0.5


def landscape_job(name: str, sweep: Path, options: Sequence[str], estimate_s: float) -> Job:
    """``python -m experiments.landscape <sweep dir> [options]``: every completed run of a sweep (phase 2: after the
    training that writes them)."""
    args = ["-m", "experiments.landscape", str(sweep), *options]
    return Job(KEY, name, args, sweep.parent / f"{sweep.name}-landscape.log", estimate_s=estimate_s, phase=2)


def _sources(ctx: Context) -> dict[str, tuple[Path, tuple[int, ...], bool]]:
    """Where the depth and batch-norm runs come from: (sweep root, seeds, trained by this section?). When the depth
    and batch-norm sections run in the same invocation (they plan first), their runs are measured, with their seeds;
    alone (``--only landscape``), this section trains the same nets itself."""
    own = ctx.pick(BUDGETS)
    found = {}
    for part in ("depth", "batchnorm"):
        if part in ctx.jobs and part in ctx.picked:
            found[part] = (ctx.dir(part) / "runs", ctx.picked[part].seeds, False)
        else:
            found[part] = (ctx.dir(KEY) / "runs" / part, own.seeds, True)
    return found


def plan(ctx: Context) -> list[Job]:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY) / "runs"
    quick = list(budget.overrides)
    jobs: list[Job] = []
    sources = _sources(ctx)
    depth_options = DEPTH_LANDSCAPE if not ctx.quick else (*DEPTH_LANDSCAPE, "--images", "32", "--curvature-images",
                                                           "32", "--grid", "3")
    for part, (root, seeds, own) in sources.items():
        overrides = DEPTH if part == "depth" else BATCHNORM
        options = depth_options if part == "depth" else CURVATURE_ONLY
        if not own:  # the depth and batch-norm sections' sweeps hold four nets per seed: the two compared here
            options = (*options, "--where", f"model.depth={DEEP}" if part == "depth" else "activation=relu")
        per_run = {"depth": 55.0, "batchnorm": 30.0}[part] if not ctx.quick else 10.0
        # measured: 44 s for the two 32-layer nets of a seed, 35 s for the two batch-norm ones (one process each)
        measure = {"depth": 22.0, "batchnorm": 17.0}[part] if not ctx.quick else 8.0
        runs = 2
        for s in seeds:
            if own:
                jobs.append(_train(f"{part}/seed{s}", [*overrides, *quick, f"seed={s}"], root / f"seed{s}",
                                   2 * per_run))
            jobs.append(landscape_job(f"{part}/seed{s}", root / f"seed{s}", options, runs * measure))
    for s in budget.seeds[:2]:
        eos = [*EOS, *(EOS_QUICK if ctx.quick else ()), f"seed={s}"]
        jobs.append(_train(f"eos/seed{s}", eos, here / "eos" / f"seed{s}", 2 * (65.0 if not ctx.quick else 10.0)))
    return jobs


def _train(name: str, overrides: Sequence[str], sweep: Path, estimate_s: float) -> Job:
    from experiments.classics.context import NO_GAP
    from experiments.classics.jobs import train_job

    return train_job(KEY, name, [*overrides, NO_GAP], sweep, estimate_s)


# ------------------------------------------------------------------------------------------------- reading


def _landscape(run: RunResult) -> dict | None:
    try:
        return json.loads((Path(run.path) / "landscape.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _record(run: RunResult) -> dict:
    try:
        return json.loads((Path(run.path) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def settled(run: RunResult) -> float | None:
    """The median sharpness over the last third of the run's measurements (where Cohen et al. see it hover)."""
    values = (_record(run).get("sharpness") or {}).get("top_eig") or []
    tail = sorted(v for v in values[-max(1, int(len(values) * SETTLE_FRACTION)):] if math.isfinite(v))
    if not tail:
        return None
    mid = len(tail) // 2
    return tail[mid] if len(tail) % 2 else (tail[mid - 1] + tail[mid]) / 2


def _farthest(values: Sequence[float], target: float) -> float | None:
    """The value farthest from ``target`` (None for none): a claim about every seed is judged by its worst."""
    return max(values, key=lambda v: abs(v - target)) if values else None


def _arms(ctx: Context, part: str, arms: dict[str, tuple[str, ...]]) -> dict[str, list[RunResult]]:
    """Each arm's completed runs; an override every run shares (this section's own depth-32 sweep) is not part of
    the report's group keys, so an arm is looked up with its full overrides first, then without the first one."""
    root = _sources(ctx)[part][0] if part in ("depth", "batchnorm") else ctx.dir(KEY) / "runs" / part
    summary = evidence.load([root])
    found = {}
    for label, keys in arms.items():
        group = evidence.find(summary, *keys) or (evidence.find(summary, *keys[1:]) if len(keys) > 1 else None)
        found[label] = evidence.runs_of(group)
    return found


# ------------------------------------------------------------------------------------------------- figures


def _contours(runs: dict[str, list[RunResult]], path: Path) -> Path | None:
    """Seed 0's 2D slices of plain-32 and ResNet-32 side by side, on one colour scale (Li et al.'s Fig. 5 layout)."""
    import numpy as np

    found = {}
    for label, arm_runs in runs.items():
        first = next((r for r in sorted(arm_runs, key=lambda r: r.seed or 0) if _landscape(r)), None)
        land = _landscape(first) if first is not None else None
        if land and land.get("surface"):
            found[label] = land
    if len(found) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # log10 of the loss on shared levels: a deep plain net's loss grows by orders of magnitude within the grid, which
    # on a linear scale would leave the residual net's panel empty
    logs = {label: np.log10(np.clip(np.asarray(land["surface"]["loss"], dtype=float), 1e-6, None))
            for label, land in found.items()}
    low = min(float(np.nanmin(v)) for v in logs.values())
    high = max(float(np.nanmax(v)) for v in logs.values())
    levels = np.linspace(low, high if high > low else low + 1.0, 16)
    fig, axes = plt.subplots(1, len(found), figsize=(5.2 * len(found), 4.6))
    for ax, (label, land) in zip(np.atleast_1d(axes), found.items(), strict=False):
        coords = np.asarray(land["surface"]["coords"])
        x, y = np.meshgrid(coords, coords)
        shown = ax.contour(x, y, logs[label], levels=levels, cmap="viridis")
        ax.clabel(shown, fontsize=6, fmt="%.1f")
        ax.plot([0], [0], marker="*", color="red", markersize=9)
        ax.set_title(f"{label} (seed 0): log10 training loss on a 2D slice", fontsize=9)
        ax.set_xlabel("filter-normalised direction 1")
        ax.set_ylabel("direction 2")
        ax.set_aspect("equal")
    fig.colorbar(shown, ax=list(np.atleast_1d(axes)), label="log10 training loss (same levels in both panels)")
    fig.suptitle("BatchNorm in eval mode (each run's running statistics)", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _sharpness_curves(runs: dict[float, list[RunResult]], path: Path) -> Path | None:
    """Sharpness against step for each rate and seed, with 2/η dashed (Cohen et al.'s Fig. 1 layout), and the
    training loss below."""
    if not any(_record(r).get("sharpness") for arm in runs.values() for r in arm):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 6.4), sharex=True)
    colours = dict(zip(runs, ("tab:blue", "tab:red", "tab:green"), strict=False))
    for lr, arm in runs.items():
        for run in arm:
            record = _record(run)
            sharp = record.get("sharpness") or {}
            history = record.get("history") or {}
            label = f"η = {lr:g}, seed {run.seed}"
            top.plot(sharp.get("step", []), sharp.get("top_eig", []), color=colours[lr], alpha=0.8,
                     linestyle="-" if not run.seed else ":", label=label)
            bottom.plot(history.get("step", []), history.get("train/loss", []), color=colours[lr], alpha=0.8,
                        linestyle="-" if not run.seed else ":", label=label)
        top.axhline(2.0 / lr, color=colours[lr], linestyle="--", linewidth=1.0, label=f"2/η = {2.0 / lr:.3g}")
    top.set_ylabel("sharpness: top Hessian eigenvalue")
    top.legend(fontsize=7, ncol=2)
    top.set_title("full-batch gradient descent: sharpness rises to 2/η and hovers there (edge of stability)",
                  fontsize=9)
    bottom.set_ylabel("training loss (quadratic cost)")
    bottom.set_xlabel("gradient-descent step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------- render


def render(ctx: Context) -> Rendered:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    plain, res = f"plain-{DEEP}", f"ResNet-{DEEP}"
    depth = _arms(ctx, "depth", {plain: (f"model.depth={DEEP}", "model.residual=False"),
                                 res: (f"model.depth={DEEP}", "model.residual=True")})
    norm = _arms(ctx, "batchnorm", {"ReLU + BN": ("activation=relu", "norm=batch"),
                                    "ReLU": ("activation=relu", "norm=none")})
    eos = _arms(ctx, "eos", {lr: (f"optimizer.lr={lr}",) for lr in RATES})
    metric, log10 = evidence.metric_of, evidence.log10_of
    rise, ratio, top = metric("train/loss_rise"), metric("train/eig_ratio"), metric("train/top_eig")
    trace = metric("train/hessian_trace")

    rows = [[label, evidence.fmt(evidence.arm(arm_runs, metric("test/acc"), True)),
             evidence.fmt(evidence.arm(arm_runs, rise, False)), evidence.fmt(evidence.arm(arm_runs, ratio, False)),
             evidence.fmt(evidence.geometric(arm_runs, top), 3), evidence.fmt(evidence.geometric(arm_runs, trace), 3)]
            for label, arm_runs in depth.items()]
    depth_table = evidence.table(["net", "test accuracy", f"training-loss rise at radius {RADIUS:g}",
                                  "|λ_min/λ_max|", "top eigenvalue (geometric mean)", "Hessian trace (geometric)"],
                                 rows)
    norm_rows = [[label, evidence.fmt(evidence.arm(arm_runs, metric("test/acc"), True)),
                  evidence.fmt(evidence.geometric(arm_runs, top), 3),
                  evidence.fmt(evidence.geometric(arm_runs, trace), 3)] for label, arm_runs in norm.items()]
    norm_table = evidence.table(["net", "test accuracy", "top eigenvalue (geometric mean)",
                                 "Hessian trace (geometric)"], norm_rows)
    eos_rows = []
    for lr, arm_runs in eos.items():
        values = [v for r in arm_runs if (v := settled(r)) is not None]
        eos_rows.append([f"{lr:g}", f"{2.0 / lr:.3g}",
                         ", ".join(f"{v:.3g}" for v in values) or "—",
                         ", ".join(f"{v / (2.0 / lr):.2f}" for v in values) or "—"])
    eos_table = evidence.table(["η", "2/η", "settled sharpness per seed (median of the last third)",
                                "÷ 2/η"], eos_rows)
    claims = judge([
        paired(f"the deep plain net's minimum is sharper along filter-normalised directions: plain-{DEEP}'s "
               f"training loss rises more at radius {RADIUS:g} than ResNet-{DEEP}'s (log10 of the rise; Li et al. "
               f"Fig. 5)", evidence.paired_values(depth[plain], depth[res], log10(rise)),
               names=(f"log10 {plain}", f"log10 {res}"), digits=2),
        paired(f"and sharper in the Hessian: plain-{DEEP}'s top eigenvalue exceeds ResNet-{DEEP}'s (log10; "
               f"Keskar et al. 2017's sharpness)", evidence.paired_values(depth[plain], depth[res], log10(top)),
               names=(f"log10 {plain}", f"log10 {res}"), digits=2),
        paired(f"and is less convex: plain-{DEEP}'s |λ_min/λ_max| exceeds ResNet-{DEEP}'s (Li et al. §7)",
               evidence.paired_values(depth[plain], depth[res], ratio), names=(plain, res)),
        paired("batch norm lowers the top Hessian eigenvalue of the ReLU net (log10, Ghorbani et al. 2019)",
               evidence.paired_values(norm["ReLU"], norm["ReLU + BN"], log10(top)),
               names=("log10 without BN", "log10 with BN"), digits=2),
        *[within(f"edge of stability at η = {lr:g}: every seed's settled sharpness is within ±{EOS_TOLERANCE:.0%} of "
                 f"2/η = {2.0 / lr:.3g} (Cohen et al. Fig. 1; the seed farthest from it is shown)",
                 _farthest([v for r in eos[lr] if (v := settled(r)) is not None], 2.0 / lr), 2.0 / lr,
                 EOS_TOLERANCE) for lr in RATES],
    ])
    contour = ctx.figure(_contours(depth, here / "contours.png"), "landscape_contours")
    curves = ctx.figure(_sharpness_curves(eos, here / "sharpness.png"), "landscape_sharpness")
    body = f"""
**Plain vs residual, seen as a landscape.** The depth section's nets at its budget (`{' '.join(DEPTH)}`; seeds
{budget.seed_list}), each measured by `python -m experiments.landscape` on 128 training images: the loss along two
random filter-normalised directions (Li et al. §4: every filter of a direction has the norm of its weight filter, bias
and batch-norm directions zero), the mean training-loss rise at radius {RADIUS:g} along both, both ways, and the
Hessian's extreme eigenvalues (Lanczos, 20 steps) and trace (Hutchinson, 10 probes). Batch norm is in eval mode with
each run's running statistics, so the loss sliced is the one the run is evaluated with.

{depth_table}

{image(contour, "2D loss slices of plain and residual nets", "Training loss on a 2D slice around each net's tested "
       "weights, seed 0, same contour levels (`python -m experiments.landscape`; figures of every run under "
       "each run's figures/).")}

**Published.** Li et al. (NeurIPS 2018) Fig. 5: ResNet-56's slice is convex and wide, plain-56's chaotic, with
sharp non-convex regions; their §7 maps |λ_min/λ_max| (small = locally convex) and finds the plain nets' large.
**Where ours differ.** 32 layers at width 8 on 16-pixel shapes, not 56 layers on CIFAR-10; a 9 × 9 grid, not 51 ×
51; the separating numbers are paired over seeds, where they show a contour plot of one.

**Batch norm and curvature.** The batch-norm section's ReLU net, with and without `norm=batch` (`{' '.join(BATCHNORM)}`;
seeds {budget.seed_list}); curvature only (`{' '.join(CURVATURE_ONLY)}`).

{norm_table}

Ghorbani, Krishnan & Xiao (ICML 2019) §4: without batch norm the Hessian of an ImageNet ResNet has large isolated
outlier eigenvalues that batch norm removes. A smaller top eigenvalue allows larger stable steps; scale invariance
makes the comparison subtle (the eigenvalues of a batch-normalised net change with its weight norm).

**Edge of stability.** `experiment=edge_of_stability`: full-batch gradient descent (no momentum, no weight decay,
`scheduler=none`, `augment=none`, one batch = the 500 training images), tanh and average pooling (smooth, as Cohen et
al.'s tanh nets), the quadratic cost, 250 steps at η = {', '.join(f'{lr:g}' for lr in RATES)}; the `sharpness`
diagnostic measures the top eigenvalue every 10 steps on all training images (Lanczos, 15 steps; seeds 0, 1).

{eos_table}

{image(curves, "sharpness during full-batch gradient descent", "Top Hessian eigenvalue every 10 steps (solid: seed 0, "
       "dotted: seed 1) with 2/η dashed, and the training loss (metrics.json `sharpness`, TensorBoard "
       "`~curvature/top_eig`).")}

**Published.** Cohen, Kaur, Li, Kolter & Talwalkar (ICLR 2021) Fig. 1: on a CIFAR-10 subset of 5 000 images, the
sharpness of full-batch gradient descent rises ("progressive sharpening") until it reaches 2/η and then hovers just
above it while the loss keeps falling non-monotonically. **Where ours differ.** 500 images of 16 pixels, a 3-stage
CNN of width 8 and 250 steps; the settled value is the median of the last third of the measurements. A seed whose
sharpness is still rising toward 2/η at the last step has not reached the edge of stability within the budget
(progressive sharpening is slower from some initialisations); the claim holds only when every seed has.
"""
    held = [c.status == HOLDS for c in claims]
    why = ("the plain net's sharper, less convex landscape and the edge of stability are both seen"
           if all(held) else "some landscape claims are not resolved at this budget (see the claims)")
    return Rendered(KEY, TITLE, body, claims, why)
