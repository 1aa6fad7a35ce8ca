"""Glorot & Bengio 2010: vanishing gradients and top-layer saturation in deep sigmoid nets, against tanh,
rectifiers and maxout, with the "standard" and the normalised (Xavier) initialisation, each arm at its best
learning rate."""

from __future__ import annotations

import math

from experiments.classics import evidence, figures
from experiments.classics.claims import HOLDS, Claim, Paired, judge, paired
from experiments.classics.context import FULL, QUICK, Budget, Context, Rendered, image
from experiments.classics.jobs import Job, report_job
from experiments.reporting import RunResult
from experiments.run.layout import RunDir

KEY = "activations"
TITLE = "Activations and initialisation (Glorot & Bengio 2010)"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "maxout")  # the experiment's own grid
INITS = ("standard", "xavier")
#: AdamW learning rates tried per arm (the experiment's default 0.004 sits between them)
LEARNING_RATES = (0.002, 0.008)
#: measurements every 10 steps, so the end of training is measured too
DIAGNOSTICS = ("diagnostics.gradients.interval=10", "diagnostics.activations.interval=10")
BUDGETS = {
    # 3 000 images, 5 epochs: the learners reach 0.8 validation accuracy at lr 0.002 (at 2 000 x 4 nothing learns).
    # Five seeds: with three, the page of 2026-12-07 left three claims unresolved, for which the planner asked 5-8
    # seeds. run_s: 1 053 core-s for 60 runs on that page (idle, the gap measurement off)
    FULL: Budget((0, 1, 2, 3, 4), ("data.train_size=3000", "trainer.max_epochs=5", *DIAGNOSTICS), run_s=18.0),
    QUICK: Budget((0, 1), ("data.train_size=400", "data.val_size=100", "data.test_size=100", "trainer.max_epochs=2",
                           *DIAGNOSTICS), run_s=6.0),
}
BASELINE = "activation=relu,init=xavier"
#: Glorot & Bengio 2010, Table 1, Shapeset-3x2 test error (%), 5 hidden layers of 1000 units, SGD
GLOROT_TABLE1 = {"sigmoid": "82.61", "tanh (standard)": "27.15", "tanh (normalised)": "15.60",
                 "softsign (standard)": "16.27", "softsign (normalised)": "16.06"}
#: sigmoid's first/last gradient ratio at initialisation must be this many times smaller than ReLU's
VANISHING_BOUND = 1e-3
#: a net that learns beats the untrainable sigmoid net's (chance-level) test accuracy by at least this much
LEARNS_MARGIN = 0.3


def plan(ctx: Context) -> list[Job]:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    grid = ["experiment=sigmoid_vs_relu", f"optimizer.lr={','.join(map(str, LEARNING_RATES))}"]
    slices = [(f"{init}/seed{s}", [f"init={init}", f"seed={s}"]) for init in INITS for s in budget.seeds]
    jobs = ctx.sweeps(KEY, grid, budget, runs_per_slice=len(ACTIVATIONS) * len(LEARNING_RATES), slices=slices)
    for init in INITS:
        jobs.append(report_job(KEY, f"report-{init}", [here / "runs" / init], here / f"report-{init}",
                               ["--best-of", "optimizer.lr"]))
    jobs.append(report_job(KEY, "report", [here / "runs"], here / "report",
                           ["--best-of", "optimizer.lr", "--baseline", BASELINE]))
    return jobs


def top_layer(run: RunResult) -> tuple[str | None, dict[str, float | None]]:
    """The last hidden activation layer and its mean / saturated fraction at initialisation (metrics.json)."""
    record = RunDir(run.path).read_record() or {}
    stats = record.get("activation_stats") or {}
    layers = stats.get("layers") or []
    if not layers:
        return None, {}
    return layers[-1], {k: (stats.get(k) or [None])[-1] for k in ("mean", "saturated")}


def top_layer_end(run: RunResult, layer: str | None) -> dict[str, float | None]:
    """The same layer's mean / saturated fraction at the last measurement of training (TensorBoard scalars)."""
    if layer is None:
        return {}
    tags = {"mean": f"act_mean/{layer}", "saturated": f"act_saturated/{layer}"}
    series = evidence.scalars(run.path, list(tags.values()))
    return {k: (series[t][-1][1] if series.get(t) else None) for k, t in tags.items()}


def render(ctx: Context) -> Rendered:
    budget = ctx.pick(BUDGETS)
    here = ctx.dir(KEY)
    summary = evidence.load([here / "runs"], baseline=BASELINE, best_of="optimizer.lr")
    rows, found, top_rows = [], {}, []
    test_acc, ratio = evidence.metric_of("test/acc"), evidence.metric_of("vanishing_ratio")
    baseline_runs = evidence.runs_of(evidence.find(summary, "activation=relu", "init=xavier"))
    for init in INITS:
        for act in ACTIVATIONS:
            group = evidence.find(summary, f"activation={act}", f"init={init}")
            arm_runs = evidence.runs_of(group)
            found[act, init] = group
            rows.append([act, init, group.selected if group is not None and group.selected else "—",
                         evidence.fmt(evidence.arm(arm_runs, test_acc, True)),
                         evidence.fmt(evidence.arm(arm_runs, evidence.metric_of("test/ece"), True)),
                         evidence.fmt(evidence.geometric(arm_runs, ratio), 2),
                         "baseline" if (act, init) == ("relu", "xavier") else
                         evidence.fmt(evidence.delta(arm_runs, baseline_runs, test_acc))])
            if act in ("sigmoid", "tanh"):
                start = [top_layer(run) for run in arm_runs]
                end = [top_layer_end(run, layer) for run, (layer, _) in zip(arm_runs, start, strict=True)]
                top_rows.append([f"{act}, {init}", *(
                    evidence.fmt(evidence.shown([item.get(key) for item in items], key == "saturated"), 2)
                    for key in ("mean", "saturated") for items in ([s for _, s in start], end))])
    results = evidence.table(["activation", "init", "best lr (on val)", "test accuracy",
                              "test ECE (15 bins; lower: better calibrated)", "first/last gradient at init",
                              "Δ test accuracy vs relu+xavier"], rows)
    saturation = evidence.table(["top hidden layer of", "mean at init", "mean at the end", "saturated at init",
                                 "saturated at the end"], top_rows)

    def runs(act: str, init: str):
        return evidence.runs_of(found[act, init])

    def best_other(init: str) -> str | None:
        """The best non-sigmoid arm by mean *validation* accuracy (chosen without looking at the test set)."""
        scored = [(evidence.arm(runs(a, init), evidence.metric_of("val/acc"), True).mean, a)
                  for a in ACTIVATIONS if a != "sigmoid"]
        scored = [(m, a) for m, a in scored if m is not None]
        return max(scored)[1] if scored else None

    log_ratio = evidence.log10_of(ratio)
    sigmoid_runs = runs("sigmoid", "standard")
    start_of = lambda r: top_layer(r)[1].get("mean")  # noqa: E731
    end_of = lambda r: top_layer_end(r, top_layer(r)[0]).get("mean")  # noqa: E731
    others = {init: best_other(init) for init in INITS}
    items: list[Claim | Paired] = [
        paired("at initialisation the sigmoid net's gradients vanish toward the input: its first/last layer gradient "
               f"ratio is over {-math.log10(VANISHING_BOUND):g} orders of magnitude below ReLU's (standard init)",
               evidence.paired_values(runs("relu", "standard"), sigmoid_runs, log_ratio),
               -math.log10(VANISHING_BOUND), names=("log10 relu", "log10 sigmoid"), digits=2),
        paired("normalised initialisation lifts the sigmoid net's first/last gradient ratio",
               evidence.paired_values(runs("sigmoid", "xavier"), sigmoid_runs, log_ratio),
               names=("log10 xavier", "log10 standard"), digits=2),
        *(paired(f"with {init} initialisation the deep sigmoid net does not learn where another activation does: the "
                 f"best other's test accuracy (each at its best lr; best chosen on validation: {others[init]}) exceeds "
                 f"the sigmoid's by {LEARNS_MARGIN}",
                 evidence.paired_values(runs(others[init], init), runs("sigmoid", init), test_acc)
                 if others[init] else None, LEARNS_MARGIN, names=(str(others[init]), "sigmoid"))
          for init in INITS),
        paired("normalised initialisation helps tanh (Table 1: 15.60 % vs 27.15 % error)",
               evidence.paired_values(runs("tanh", "xavier"), runs("tanh", "standard"), test_acc),
               names=("xavier", "standard"), asserted=False),
        paired("normalised (gain-scaled) initialisation is what lets the deep ReLU net learn (He et al. 2015 made "
               "this point for rectifiers)", evidence.paired_values(runs("relu", "xavier"), runs("relu", "standard"),
                                                                    test_acc),
               names=("xavier", "standard"), asserted=False),
        paired("the sigmoid net's top hidden layer is driven toward 0 during training (mean activation falls)",
               evidence.paired_values(sigmoid_runs, sigmoid_runs, start_of, end_of), names=("at init", "at the end"),
               asserted=False),
    ]
    claims = judge(items)
    flow = ctx.figure(here / "report-standard" / "gradient_flow.png", "activations_gradient_flow")
    bars = ctx.figure(here / "report" / "bars_test_acc.png", "activations_test_acc")
    sigmoid_run = sigmoid_runs[0] if sigmoid_runs else None
    over_training = ctx.figure(evidence.run_figures(sigmoid_run.path, "diagnostics/gradient_flow")[-1]
                               if sigmoid_run and evidence.run_figures(sigmoid_run.path, "diagnostics/gradient_flow")
                               else None, "activations_sigmoid_flow_training")
    drawn = figures.activation_means(sigmoid_runs[:1], here / "figures" / "sigmoid_top_layers.png",
                                     "sigmoid, standard init: mean activation per layer during training")
    means_link = ctx.figure(drawn, "activations_sigmoid_means")
    published = evidence.table(["Glorot & Bengio Table 1 (Shapeset-3x2)", "test error"],
                               [[k, f"{v} %"] for k, v in GLOROT_TABLE1.items()])
    body = f"""
`experiment=sigmoid_vs_relu` is a deep plain net without batch norm (8 convolutions in 4 stages, then 2 fully
connected layers; width 8) on the embedded shapes. Every activation runs with the "standard" initialisation
Glorot & Bengio criticised (`init=standard`, U[−1/√n, 1/√n]) and with their normalised one (`init=xavier`,
scaled by `calculate_gain` of the activation), at AdamW learning rates {', '.join(map(str, LEARNING_RATES))}
(seeds {budget.seed_list}; budget `{' '.join(budget.overrides)}`); the report keeps each arm at its best
learning rate on *validation* accuracy (`--best-of optimizer.lr`) and compares test accuracy.

{results}

**Calibration.** The test ECE is the expected calibration error every classification run now records (15
equal-width confidence bins; torchmetrics): how far the softmax's confidence is from the accuracy it achieves. Guo
et al. (ICML 2017) found modern deep nets over-confident; a net that stays at chance (the standard-init sigmoid)
is near-uniform and so trivially calibrated, which is why ECE is read beside accuracy, never alone
(`python -m experiments.evaluate RUN --temperature-scale` fits Guo et al.'s temperature on validation).

"First/last gradient at init" is the gradients diagnostic's `vanishing_ratio`: the weight-gradient norm of the
first convolution over that of the last layer on the first batch, before any update (geometric mean over seeds,
its interval a t interval on the log scale, since the ratio spans orders of magnitude).

**Saturation.** The top hidden layer is the last activation before the classifier; its mean and saturated
fraction (sigmoid < 0.01 or > 0.99, tanh \\|a\\| > 0.98) come from the activations diagnostic at the first step
(`metrics.json`) and at its last measurement during training (TensorBoard), for the runs at each arm's best
learning rate:

{saturation}

{image(flow, "gradient flow at initialisation, standard init", "Weight-gradient norm per layer at "
       "initialisation, input side left, mean ± std over seeds, standard init (`python -m experiments.report`). The "
       "sigmoid net's gradients shrink by orders of magnitude toward the input; the rectifiers' stay level.")}

{image(over_training, "sigmoid gradient flow at init and end", "The same sigmoid net (seed 0) at the first and "
       "the last step: the gradients diagnostic's own figure (`figures/diagnostics__gradient_flow/`).")}

{image(means_link, "sigmoid activation means during training", "Mean activation of each sigmoid layer of that "
       "run over training, from the activations diagnostic's `act_mean` scalars (drawn by src/experiments/classics).")}

{image(bars, "test accuracy per arm", "Test accuracy per arm at its best learning rate, 95 % interval over seeds "
       "(`python -m experiments.report`).")}

**Published.** Glorot & Bengio trained 5-layer MLPs with plain SGD on Shapeset-3x2 (also procedural shapes):

{published}

They observed the sigmoid's top hidden layer driven to 0 early in training (their Fig. 2) and back-propagated
gradients shrinking toward the input under the standard initialisation, which the normalised one removes for
tanh (their Fig. 7). **Where ours differ.** Convolutional nets instead of MLPs, AdamW instead of plain SGD (its
per-weight step sizes partly undo a vanishing gradient, so accuracy gaps are smaller than in Table 1), minutes
instead of hours, and we measure *weight* gradients per layer, where Glorot & Bengio's Fig. 7 shows gradients
with respect to activations; rectifiers and maxout are from Glorot et al. 2011 and Goodfellow et al. 2013.
"""
    status = [c.status for c in claims]
    why = ("sigmoid gradients vanish at init by orders of magnitude and the deep sigmoid net does not learn"
           if all(s == HOLDS for s in status[:4]) else
           "the vanishing-gradient ordering is not all resolved at these seeds")
    if status[4] != HOLDS:
        why += f"; normalised init helping tanh (Table 1) is {status[4]} here (AdamW, conv nets, a short budget)"
    if status[6] != HOLDS:
        why += f"; the sigmoid's top layer drifting toward 0 is {status[6]}"
    return Rendered(KEY, TITLE, body, claims, why)
