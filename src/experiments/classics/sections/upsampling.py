"""Recovering resolution: bilinear interpolation vs a bilinear-initialised transposed convolution (Long et al.
2015) vs max-unpooling (SegNet), and the transposed layer's initialisation equal to bilinear interpolation."""

from __future__ import annotations

from experiments.classics import analytic, evidence, figures, shift
from experiments.classics.claims import HOLDS, Claim, judge, paired
from experiments.classics.context import FULL, QUICK, Budget, Context, Rendered, image
from experiments.classics.jobs import Job, report_job

KEY = "upsampling"
TITLE = "Upsampling: bilinear, transposed, unpooling"
METHODS = ("bilinear", "transposed", "unpool")
SEGMENTATION_BUDGETS = {
    # 32x32 px shapes_seg, 1-3 shapes per image, batch 32
    # 217 core-s for 9 runs on the page of 2026-12-07
    FULL: Budget((0, 1, 2), ("data.train_size=1500", "trainer.max_epochs=4"), run_s=25.0),
    QUICK: Budget((0, 1), ("data.train_size=256", "data.val_size=64", "data.test_size=64", "trainer.max_epochs=2"),
                  run_s=7.0),
}
BUDGETS = SEGMENTATION_BUDGETS
BASELINE = "upsampling=bilinear"
#: the learned, bilinear-initialised upsampling may trail fixed bilinear by at most this much mean IoU
MIOU_TOLERANCE = 0.02
#: the transposed conv at initialisation equals bilinear interpolation to float32 precision (inner pixels)
INIT_TOLERANCE = 1e-5


def plan(ctx: Context) -> list[Job]:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    jobs = ctx.sweeps(KEY, ["experiment=upsampling"], budget, runs_per_slice=len(METHODS))
    jobs.append(report_job(KEY, "report", [here / "runs"], here / "report", ["--baseline", BASELINE]))
    return jobs


def render(ctx: Context) -> Rendered:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    layers = analytic.transposed_vs_bilinear()
    worst = max((diff for _, diff, _ in layers), default=None)
    summary = evidence.load([here / "runs"], baseline=BASELINE)
    groups = {m: evidence.find(summary, f"upsampling={m}") for m in METHODS}
    runs = {m: evidence.runs_of(g) for m, g in groups.items()}
    miou = evidence.metric_of("test/miou")
    rows = []
    for method, group in groups.items():
        params = evidence.metric(group, "params").mean
        rows.append([method, "—" if params is None else f"{params:,.0f}",
                     evidence.fmt(evidence.arm(runs[method], miou, True)),
                     evidence.fmt(evidence.arm(runs[method], evidence.metric_of("test/pixel_acc"), True)),
                     "baseline" if method == "bilinear" else evidence.fmt(evidence.delta(runs[method],
                                                                                       runs["bilinear"], miou))])
    table = evidence.table(["upsampling", "parameters", "test mean IoU", "test pixel accuracy",
                            "Δ mean IoU vs bilinear (paired by seed)"], rows)
    claims = judge([
        Claim("the transposed convolution is initialised to bilinear interpolation: equal away from the border "
              f"(within {INIT_TOLERANCE:g})", None if worst is None else worst <= INIT_TOLERANCE,
              f"largest difference over {len(layers)} upsampling layers of FCN-8s: "
              + ("—" if worst is None else f"{worst:.1e}")),
        paired(f"learning it costs nothing: transposed mean IoU ≥ bilinear's − {MIOU_TOLERANCE}",
               evidence.paired_values(runs["transposed"], runs["bilinear"], miou), -MIOU_TOLERANCE,
               names=("transposed", "bilinear")),
    ])
    seed = min(budget.seeds)
    overlay = ctx.figure(segmentation_figure(runs, seed, here / "figures" / "segmentation.png"),
                         "upsampling_segmentation")
    bars = ctx.figure(here / "report" / "bars_test_miou.png", "upsampling_test_miou")
    body = f"""
`experiment=upsampling`: FCN-8s (the CNN encoder convolutionalised, skip scores from two earlier pools) on
`shapes_seg` at 32×32 px, upsampling by fixed bilinear interpolation, by a `ConvTranspose2d` initialised to the
bilinear kernel and learned, or by max-unpooling with the encoder's indices followed by a 3×3 conv
(seeds {budget.seed_list}; budget `{' '.join(budget.overrides)}`, 5 classes: background + 4 shapes).

**The initialisation.** A transposed convolution with the (2f − f mod 2)-tap bilinear kernel, stride f, computes
bilinear interpolation: on random maps through each of FCN-8s's upsampling layers as built, the largest
difference from `F.interpolate(mode="bilinear")` away from the outermost f pixels (where interpolation clamps
and the transposed conv sees zero padding) is {"—" if worst is None else f"{worst:.1e}"}.

{table}

{image(overlay, "segmentation samples per upsampling", "The first test images of seed "
       f"{min(budget.seeds)}: input, ground truth, and the prediction of each upsampling's run at its best "
       "checkpoint (columns titled; colours keyed below the grid), drawn by src/experiments/classics.")}

{image(bars, "mean IoU per upsampling", "Test mean IoU, 95 % interval over seeds (`python -m experiments.report`).")}

**Published.** Long et al. (2015) initialise in-network upsampling to bilinear interpolation and learn it (their
final, largest upsampling they keep fixed); in their Table 2, on a 736-image subset of PASCAL VOC 2011 *val*
(the images not in their training set), skips lift mean IU from 59.4 (FCN-32s) to 62.4 (FCN-16s) and 62.7
(FCN-8s). SegNet (Badrinarayanan et al. 2017) upsamples with the encoder's
max-pooling indices and dense decoder convolutions, storing indices instead of feature maps. **Where ours
differ.** Synthetic shapes with sharp edges and a few minutes of training: the methods' ranking, not VOC's
numbers, is what can carry over.
"""
    why = ("the transposed layer starts as exact bilinear interpolation and learning it "
           + ("does not hurt" if claims[1].status == HOLDS else f"costing nothing is {claims[1].status} here"))
    return Rendered(KEY, TITLE, body, claims, why)


def segmentation_figure(runs: dict, seed: int, path, count: int = 4):
    """Predictions of each method's run of ``seed`` on the first ``count`` test images, side by side (None when a
    run or its checkpoint is missing)."""
    import torch

    from experiments.run.layout import RunDir

    predictions, images, truth, names = {}, None, None, []
    for method in METHODS:
        run = next((r for r in runs.get(method, []) if r.seed == seed), None)
        found = shift.trained(run.path) if run is not None else None
        if found is None:
            return None
        network, test_images, targets = found
        with torch.no_grad():
            predictions[method] = network(test_images[:count]).argmax(dim=1)
        images, truth = test_images[:count], targets[:count]
        names = names or list((RunDir(run.path).read_record() or {}).get("class_names") or [])
    if not names:
        names = [str(k) for k in range(int(max(int(truth.max()), *(int(p.max()) for p in predictions.values()))) + 1)]
    return figures.segmentation_grid(images, truth, predictions, names, path,
                                     f"Upsampling: predictions on test images (seed {seed})")
