"""Compute cost of each model family: parameters and FLOPs (``experiments.inspect``) and measured images/s."""

from __future__ import annotations

import json

from experiments.classics import evidence
from experiments.classics.claims import greater
from experiments.classics.context import FULL, QUICK, Budget, Context, Rendered
from experiments.classics.jobs import Job, inspect_job

KEY = "compute"
TITLE = "Compute cost of the model families"
#: family -> the overrides `python -m experiments.train` would get (each at its own default data)
FAMILIES = {
    "cnn (default)": ("model=cnn",),
    "deep plain cnn (sigmoid_vs_relu)": ("experiment=sigmoid_vs_relu",),
    "ResNet-20": ("model=resnet",),
    "ResNet-56": ("model=resnet", "model.depth=56"),
    "FCN-8s": ("model=fcn",),
    "dilated": ("model=dilated",),
}
BATCH = 32
#: seconds of timing per family (torch.utils.benchmark's blocked_autorange)
BUDGETS = {FULL: Budget((0,), (), run_s=3.0), QUICK: Budget((0,), (), run_s=0.5)}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.split("(")[0].strip()).strip("_").lower()


def plan(ctx: Context) -> list[Job]:
    here = ctx.dir(KEY)
    return [inspect_job(KEY, _slug(label), list(overrides), here / "inspect" / f"{_slug(label)}.json")
            for label, overrides in FAMILIES.items()]


def training_step_seconds(overrides: tuple[str, ...], min_run_time: float) -> tuple[float, tuple[int, ...]]:
    """Median seconds of one training step (forward, loss, backward, SGD step) on a batch of ``BATCH`` random
    images of the family's size, one thread, timed by ``torch.utils.benchmark``; and the input shape."""
    import torch
    import torch.nn.functional as F
    from torch.utils import benchmark

    from experiments.classics.analytic import network
    from experiments.config import compose

    cfg = compose(list(overrides))
    shape = (BATCH, int(cfg.data.channels), int(cfg.data.image_size), int(cfg.data.image_size))
    net = network(overrides).train()
    classes = int(cfg.data.num_classes)
    x = torch.randn(shape)
    segmentation = cfg.data.task == "segmentation"
    y = torch.randint(0, classes, (BATCH, shape[2], shape[3]) if segmentation else (BATCH,))
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        optimizer.step()

    step()  # warm-up: allocations, lazy initialisation
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=1)
    return timer.blocked_autorange(min_run_time=min_run_time).median, shape


def measure(ctx: Context) -> None:
    """Time every family before any training starts, so nothing else competes for the cores."""
    budget = ctx.pick(BUDGETS)
    results = {}
    for label, overrides in FAMILIES.items():
        seconds, shape = training_step_seconds(overrides, budget.run_s)
        results[label] = {"seconds_per_step": seconds, "images_per_s": BATCH / seconds, "input": list(shape)}
    path = ctx.dir(KEY) / "throughput.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")


def _read(path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def render(ctx: Context) -> Rendered:
    here = ctx.dir(KEY)
    speed = _read(here / "throughput.json")
    rows, cost = [], {}
    for label in FAMILIES:
        card = _read(here / "inspect" / f"{_slug(label)}.json")
        timed = speed.get(label, {})
        params, flops, rate = card.get("total_params"), card.get("total_flops"), timed.get("images_per_s")
        cost[label] = (flops, rate)
        shape = card.get("input_shape") or timed.get("input")
        rows.append([label, "—" if shape is None else "×".join(map(str, shape[1:])),
                     "—" if params is None else f"{params:,}", "—" if flops is None else f"{flops / 1e6:.1f}",
                     "—" if rate is None else f"{rate:,.0f}",
                     "—" if rate is None or flops is None else f"{3 * flops * rate / 1e9:.2f}"])
    table = evidence.table(["family", "input (C×H×W)", "parameters", "MFLOPs / image (forward)",
                            "training images/s (1 thread)", "≈ GFLOP/s (3 × forward)"], rows)
    r20, r56 = cost["ResNet-20"], cost["ResNet-56"]
    claims = [
        greater("FLOPs predict time: ResNet-56 (≈3× ResNet-20's FLOPs) trains at least 2× slower per image",
                None if r20[1] is None else r20[1] / 2, r56[1], names=("ResNet-20 images/s ÷ 2", "ResNet-56"),
                asserted=False),
    ]
    body = f"""
Parameters and forward FLOPs per image (1 multiply-add = 2 FLOPs) from `python -m experiments.inspect
<overrides> --format json`, each family at the data it trains on by default; throughput is one training step
(forward, cross-entropy, backward, SGD step) on a batch of {BATCH} random images on **one** CPU thread, timed by
`torch.utils.benchmark` before any other work of `make classics` starts (src/experiments/classics/sections/compute.py).

{table}

The last column is the arithmetic rate those two imply (backward ≈ 2× forward): small convolutions on one core
run far below the machine's peak, and per-layer overhead weighs most on the narrow, deep nets.
**Published.** He et al. (2016) give parameter counts (section 1) but no CIFAR FLOPs or timings; the point of
this table is the order of magnitude each family costs here, before a sweep multiplies it.
"""
    why = "parameters and FLOPs come from the layer table, and measured cost follows FLOPs" if claims[0].holds else \
        "measured time did not follow FLOPs here (per-layer overhead dominates)"
    return Rendered(KEY, TITLE, body, claims, why)
