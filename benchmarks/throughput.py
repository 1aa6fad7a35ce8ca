"""Images/s of the framework's training path against a plain PyTorch loop, eager and under each torch.compile mode.

Both sides train the same network (same seed, same initialisation) on the same data, already where training
happens (on a GPU: resident there, batch order drawn there), with the same batch, optimiser, schedule, precision
(autocast) and memory layout, in one process. The framework side is what ``python -m experiments.train`` runs:
``build``'s data module, task, callbacks (checkpointing, history, the default diagnostics, the speed switches),
loggers (TensorBoard and CSV) and Trainer from the composed config; only validation (the plain loop has none) and
the progress bar (a terminal display) are off. The plain side is the loop a user would write: index a batch,
forward and loss under autocast, backward, optimiser and schedule steps.

Each is timed over the same steady window: from step ``--warmup`` (compilation, CUDA-graph recording, cudnn
autotuning and the first step's diagnostics are behind) to step ``--warmup + --steps``, the device synchronised at
both ends only. Periodic costs inside the window count: step values logged every ``log_every_n_steps``, the
diagnostics' intervals, epoch ends with their checkpoints.

    python benchmarks/throughput.py [--device cuda] [--steps N] [--warmup W] [--batch-size B]
                                    [--modes off,default,reduce-overhead,max-autotune] [--count-syncs] [overrides...]

Targets on a GPU: the framework at >= 0.95x the plain eager loop, and with ``compile=reduce-overhead`` at >= 2.5x the
plain eager loop. On a CPU the same ratios are printed. ``--count-syncs`` (CUDA) also runs the framework once with
PyTorch's sync debug mode and prints how often, and from where, the host waited for the device in the window.
"""

from __future__ import annotations

import argparse
import collections
import copy
import logging
import tempfile
import time
import traceback
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

#: ResNet-20 on CIFAR-shaped images (procedural shapes at 32x32x3: nothing to download)
NETWORK = ["model=resnet", "model.depth=20", "model.width=16", "data.image_size=32", "data.channels=3"]
#: per device: (batch, steps, warm-up steps, training images, overrides)
DEFAULTS = {
    "cuda": (512, 200, 30, 50000, ["trainer=gpu"]),
    "cpu": (128, 20, 3, 4096, ["trainer=cpu"]),
}
MODES = ("off", "default", "reduce-overhead", "max-autotune")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Window(Callback):
    """Wall clock from the start of step ``start`` to the end of step ``stop``, the device synchronised at both."""

    def __init__(self, start: int, stop: int, device: torch.device, count_syncs: bool = False) -> None:
        self.start, self.stop, self.device, self.count_syncs = start, stop, device, count_syncs
        self.t0 = self.t1 = None
        self.syncs: collections.Counter[str] = collections.Counter()
        self._catcher: Any = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.start and self.t0 is None:
            synchronize(self.device)
            if self.count_syncs:
                self._catcher = SyncCounter(self.syncs).__enter__()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           idx: int) -> None:
        if trainer.global_step == self.stop and self.t1 is None:
            if self._catcher is not None:
                self._catcher.__exit__(None, None, None)
            synchronize(self.device)
            self.t1 = time.perf_counter()


class SyncCounter:
    """Counts PyTorch's "synchronizing CUDA operation" warnings (sync debug mode) by the Python line they came from."""

    def __init__(self, counts: collections.Counter[str]) -> None:
        self.counts = counts
        self._previous: Any = None

    def _record(self, message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                line: Any = None) -> None:
        if "synchroniz" not in str(message):
            return
        frames = [f for f in traceback.extract_stack()[:-1] if "/warnings.py" not in f.filename]
        here = next((f for f in reversed(frames) if "/torch/" not in f.filename), frames[-1] if frames else None)
        self.counts[f"{here.filename}:{here.lineno} {here.name}" if here else "?"] += 1

    def __enter__(self) -> SyncCounter:
        self._previous = warnings.showwarning
        warnings.showwarning = self._record
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = self._previous
        warnings.simplefilter("ignore")


def compose(device: torch.device, batch: int, train_size: int, overrides: list[str]) -> Any:
    from omegaconf import OmegaConf

    from experiments.config import compose as compose_config

    extra = DEFAULTS[device.type][4]
    cfg = compose_config([*NETWORK, *extra, f"data.batch_size={batch}", f"data.train_size={train_size}",
                          "data.val_size=512", "data.test_size=512", *overrides])
    OmegaConf.set_struct(cfg, False)
    return cfg


def framework(cfg: Any, datamodule: Any, mode: str, steps: int, warmup: int, device: torch.device,
              count_syncs: bool = False) -> tuple[float, collections.Counter[str]]:
    """Images/s of ``python -m experiments.train``'s own objects with ``trainer.compile=<mode>``."""
    from experiments import build
    from experiments.speed.settings import SpeedSettings

    cfg = copy.deepcopy(cfg)
    cfg.trainer.compile = mode
    torch._dynamo.reset()
    with tempfile.TemporaryDirectory() as run_dir:
        cfg.run_dir = run_dir
        L.seed_everything(cfg.seed, verbose=False)
        SpeedSettings.from_config(cfg).apply(str(cfg.trainer.accelerator))
        task = build.build_task(cfg)
        window = Window(warmup, warmup + steps, device, count_syncs)
        callbacks = [*build.build_callbacks(cfg, task), window]
        trainer = build.build_trainer(cfg, callbacks, build.build_logger(cfg), max_steps=warmup + steps,
                                      max_epochs=-1, limit_val_batches=0, enable_progress_bar=False)
        trainer.fit(task, datamodule=datamodule)
    return steps * datamodule.batch_size / (window.t1 - window.t0), window.syncs


def plain(cfg: Any, datamodule: Any, mode: str, steps: int, warmup: int, device: torch.device) -> float:
    """Images/s of a hand-written loop over the same network, data, optimiser, schedule and precision."""
    from experiments import build
    from experiments.speed.compile import CUDAGRAPH_MODES

    torch._dynamo.reset()
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))
    task = build.build_task(cfg)
    network, loss_fn = task.network.to(device), task.loss_fn.to(device)
    if cfg.trainer.get("channels_last"):
        network.to(memory_format=torch.channels_last)
    total = warmup + steps
    optimizer = task.optimizer_factory(network.parameters())
    schedule = task.scheduler_factory(optimizer, total) if task.scheduler_factory else None
    forward = torch.compile(network, mode=mode, dynamic=False) if mode != "off" else network
    cudagraphs = mode in CUDAGRAPH_MODES and device.type == "cuda"
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    datamodule.place(device)
    images, labels = datamodule.served["train"].tensors
    batch = datamodule.batch_size
    per_epoch = len(images) // batch
    network.train()
    order = torch.randperm(len(images), device=device)
    t0 = time.perf_counter()
    for step in range(total):
        if step == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        b = step % per_epoch
        if b == 0:
            order = torch.randperm(len(images), device=device)
        rows = order[b * batch: (b + 1) * batch]
        x, y = images.index_select(0, rows), labels.index_select(0, rows)
        if cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--steps", type=int, help="measured steps (default: 200 on cuda, 20 on cpu)")
    parser.add_argument("--warmup", type=int, help="steps before the window (default: 30 on cuda, 3 on cpu)")
    parser.add_argument("--batch-size", type=int, help="default: 512 on cuda, 128 on cpu")
    parser.add_argument("--train-size", type=int, help="training images (default: 50000 on cuda, 4096 on cpu)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--count-syncs", action="store_true", help="(cuda) where the framework waits for the GPU")
    args, overrides = parser.parse_known_args()
    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    batch, steps, warmup, train_size, _ = DEFAULTS[device.type]
    batch, steps = args.batch_size or batch, args.steps or steps
    warmup = args.warmup if args.warmup is not None else warmup
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    from experiments import build

    cfg = compose(device, batch, args.train_size or train_size, overrides)
    datamodule = build.build_datamodule(cfg)
    datamodule.setup()
    plain(cfg, datamodule, "off", 3, 2, device)  # process warm-up: allocator, kernels, cudnn autotuning

    results: dict[str, tuple[float, float]] = {}
    for mode in modes:
        loop = plain(cfg, datamodule, mode, steps, warmup, device)
        ours, _ = framework(cfg, datamodule, mode, steps, warmup, device)
        results[mode] = (loop, ours)
        print(f"  {mode:<16} plain {loop:10.1f} img/s   framework {ours:10.1f} img/s", flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    from importlib.metadata import version

    print(f"\nResNet-20, {cfg.data.image_size}x{cfg.data.image_size}x{cfg.data.channels}, batch {batch}, "
          f"{cfg.trainer.precision}, channels_last={cfg.trainer.channels_last}, {torch.get_num_threads()} threads, "
          f"{name}; torch {torch.__version__}, lightning {version('lightning')}")
    print(f"{steps} measured steps after {warmup} warm-up steps; framework = default diagnostics, TensorBoard + CSV, "
          f"log every {cfg.trainer.log_every_n_steps} steps; overrides: {' '.join(overrides) or '(none)'}\n")
    eager = results.get("off", (None, None))[0]
    print(f"{'compile':<16} {'plain img/s':>12} {'framework img/s':>16} {'framework/plain':>16} "
          f"{'framework/plain eager':>22}")
    for mode, (loop, ours) in results.items():
        versus = f"{ours / eager:22.3f}" if eager else f"{'-':>22}"
        print(f"{mode:<16} {loop:12.1f} {ours:16.1f} {ours / loop:16.3f} {versus}")
    if eager:
        checks = [("framework eager >= 0.95x plain eager", "off", 0.95),
                  ("framework reduce-overhead >= 2.5x plain eager", "reduce-overhead", 2.5)]
        where = "" if device.type == "cuda" else " (GPU targets; for reference only on a CPU)"
        print(f"\ntargets{where}:")
        for text, mode, target in checks:
            if mode in results:
                ratio = results[mode][1] / eager
                print(f"  {text}: {ratio:.3f} {'met' if ratio >= target else 'NOT met'}")

    if args.count_syncs and device.type == "cuda":
        _, syncs = framework(cfg, datamodule, "off", steps, warmup, device, count_syncs=True)
        print(f"\nhost waits for the GPU in the framework's eager window ({steps} steps): {sum(syncs.values())}")
        for where, count in syncs.most_common(8):
            print(f"  {count:6d}  {where}")


if __name__ == "__main__":
    main()
