"""Cost of the diagnostics: training throughput with ``diagnostics=off`` vs ``default`` vs ``full``.

Every run trains the same configuration (same seed, same in-memory data, same number of optimiser
steps, validation every epoch as in a real run) through the framework's own Trainer, callbacks and
TensorBoard logger. Two numbers per setting:

* **steady steps/s** – optimiser steps per second after ``--warmup`` steps, up to the end of training
  (periodic costs included: interval measurements, the per-step divergence check, validation,
  epoch-end gaps and figures). This is the throughput the issue's <= 10 % budget refers to;
* **in-hook share** – time spent inside the diagnostics' own code (every callback hook and the
  activation forward hooks, timed) as a fraction of the same steady window. On a shared, loaded
  machine the wall-clock rates are noisy; this ratio is not, because load slows both parts alike;
* **start-up s** – the one-off cost before the warm-up ends (layer summary with its fx trace and
  FLOP count, first gradient-flow figure, matplotlib import), reported separately because it does
  not grow with the run.

Settings are interleaved over ``--rounds`` rounds and the median is reported, so that load from
other processes on a shared machine hits all settings alike.

    python benchmarks/bench_diagnostics.py [--steps 300] [--warmup 20] [--rounds 3] [overrides...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

SETTINGS = ("off", "default", "full")


def instrument(callbacks: list, spent: list[float]) -> None:
    """Wrap every hook of the diagnostics callbacks (and the activation forward hook) so that the time spent
    inside them accumulates in ``spent[0]``."""

    def timed(fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t

        return wrapper

    for callback in callbacks:
        if type(callback).__module__.startswith("experiments.diagnostics"):
            for name in [n for n in dir(Callback) if n.startswith("on_")] + ["_hook"]:
                if hasattr(callback, name):
                    setattr(callback, name, timed(getattr(callback, name)))


class StepClock(Callback):
    """Wall clock from the start of step ``warmup`` to the end of training (last in the callback list)."""

    def __init__(self, warmup: int, spent: list[float]) -> None:
        self.warmup = warmup
        self.spent = spent
        self.fit_start = self.start = self.end = 0.0
        self.hooks_at_start = self.hooks_at_end = 0.0
        self.steps = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and not self.start:
            self.start = time.perf_counter()
            self.hooks_at_start = self.spent[0]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = time.perf_counter()
        self.hooks_at_end = self.spent[0]
        self.steps = trainer.global_step - self.warmup


def run(setting: str, overrides: list[str], datamodule, steps: int, warmup: int) -> tuple[float, float, float]:
    """(steady steps/s, in-hook share of the steady window, start-up seconds) of one fit."""
    from omegaconf import OmegaConf

    from experiments import instantiate as build
    from experiments.config import compose

    cfg = compose(["trainer.accelerator=cpu", "trainer.enable_progress_bar=false", f"diagnostics={setting}",
                   *overrides])
    OmegaConf.set_struct(cfg, False)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run_dir = tmp
        L.seed_everything(cfg.seed, verbose=False)
        task = build.build_task(cfg)
        spent = [0.0]
        clock = StepClock(warmup, spent)
        callbacks = build.build_callbacks(cfg, task, Path(tmp))
        instrument(callbacks, spent)
        callbacks.append(clock)
        trainer = build.build_trainer(cfg, callbacks, build.build_logger(cfg), max_steps=steps, max_epochs=-1)
        trainer.fit(task, datamodule=datamodule)
    window = clock.end - clock.start
    return clock.steps / window, (clock.hooks_at_end - clock.hooks_at_start) / window, clock.start - clock.fit_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args, overrides = parser.parse_known_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from experiments import instantiate as build
    from experiments.config import compose

    datamodule = build.build_datamodule(compose(overrides))
    datamodule.setup()
    run("off", overrides, datamodule, args.warmup + 5, 2)  # warm-up: allocator, oneDNN kernels, imports

    rates: dict[str, list[float]] = {s: [] for s in SETTINGS}
    shares: dict[str, list[float]] = {s: [] for s in SETTINGS}
    startup: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
        for setting in SETTINGS:
            rate, share, start = run(setting, overrides, datamodule, args.steps, args.warmup)
            rates[setting].append(rate)
            shares[setting].append(share)
            startup[setting].append(start)
            print(f"round {r + 1} {setting:>7}: {rate:6.2f} steps/s, in hooks {share:6.2%}, start-up {start:5.2f} s",
                  flush=True)

    base = statistics.median(rates["off"])
    print(f"\n{args.steps} steps x {args.rounds} rounds, median; overrides: {' '.join(overrides) or '(none)'}")
    print(f"{'diagnostics':>11}  {'steps/s':>8}  {'cost':>8}  {'in hooks':>8}  {'start-up s':>10}")
    for setting in SETTINGS:
        rate, share = statistics.median(rates[setting]), statistics.median(shares[setting])
        print(f"{setting:>11}  {rate:8.2f}  {1 - rate / base:8.1%}  {share:8.2%}"
              f"  {statistics.median(startup[setting]):10.2f}")
    print("cost = 1 - steps/s / steps/s(off); in hooks = time inside the diagnostics / steady wall time")


if __name__ == "__main__":
    main()
