"""Cost of the diagnostics: training throughput with ``diagnostics=off`` vs ``default`` vs ``full``.

Every run trains the same configuration (same seed, same in-memory data, same number of optimiser
steps, validation every epoch as in a real run) through the framework's own Trainer, callbacks and
TensorBoard logger. Measured over a steady window, from step ``--warmup`` to the end of training
(periodic costs included: interval measurements, the per-step divergence check, validation,
epoch-end gaps and figures):

* **steps/s** – wall-clock throughput; the issue's <= 10 % budget is ``1 - steps/s / steps/s(off)``;
* **steps/cpu-s** – steps per second of this process's CPU time. On a shared machine other
  processes stretch wall time at random; CPU time is far less sensitive, so this is the cost to
  trust when the wall-clock numbers scatter;
* **in hooks** – time inside the diagnostics' own code (every callback hook and the activation
  forward hooks, timed) as a fraction of the window's wall time: load slows both parts alike;
* **start-up s** – the one-off cost before the warm-up ends (layer summary with its fx trace and
  FLOP count, first gradient-flow figure, matplotlib import); it does not grow with the run.

Settings are interleaved over ``--rounds`` rounds and medians are reported. The cost of a round is paired: each
setting's rate against ``off``'s in the same round; ``--json PATH`` writes every cost's median and range over the
rounds, with the machine (``docs/results/bench_diagnostics.json`` is the file the README quotes).

    python benchmarks/bench_diagnostics.py [--steps 300] [--warmup 20] [--rounds 3] [--threads N] [--json PATH]
                                           [overrides...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_io import REPO, spread, write  # noqa: E402

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
    """Wall and CPU clocks from the start of step ``warmup`` to the end of training (last in the callback list)."""

    def __init__(self, warmup: int, spent: list[float]) -> None:
        self.warmup = warmup
        self.spent = spent
        self.marks: dict[str, tuple[float, float, float]] = {}
        self.steps = 0

    def _mark(self, name: str) -> None:
        self.marks[name] = (time.perf_counter(), time.process_time(), self.spent[0])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark("fit")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and "start" not in self.marks:
            self._mark("start")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark("end")
        self.steps = trainer.global_step - self.warmup

    def result(self) -> dict[str, float]:
        (w0, c0, h0), (w1, c1, h1) = self.marks["start"], self.marks["end"]
        return {"wall": self.steps / (w1 - w0), "cpu": self.steps / (c1 - c0), "hooks": (h1 - h0) / (w1 - w0),
                "startup": w0 - self.marks["fit"][0]}


def run(setting: str, overrides: list[str], datamodule, steps: int, warmup: int) -> dict[str, float]:
    """One fit with ``diagnostics=<setting>``: steady wall/CPU rates, in-hook share, start-up seconds."""
    from omegaconf import OmegaConf

    from experiments import build
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
        callbacks = build.build_callbacks(cfg, task)
        instrument(callbacks, spent)
        callbacks.append(clock)
        trainer = build.build_trainer(cfg, callbacks, build.build_logger(cfg), max_steps=steps, max_epochs=-1)
        trainer.fit(task, datamodule=datamodule)
    return clock.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads; 1 makes CPU time exact on a loaded machine (no spinning workers)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the costs' medians and ranges over the rounds, with the machine, to PATH")
    args, overrides = parser.parse_known_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from experiments import build
    from experiments.config import compose

    datamodule = build.build_datamodule(compose(overrides))
    datamodule.setup()
    run("off", overrides, datamodule, args.warmup + 5, 2)  # warm-up: allocator, oneDNN kernels, imports

    results: dict[str, list[dict[str, float]]] = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
        for setting in SETTINGS:
            res = run(setting, overrides, datamodule, args.steps, args.warmup)
            results[setting].append(res)
            print(f"round {r + 1} {setting:>7}: {res['wall']:6.2f} steps/s, {res['cpu']:6.2f} steps/cpu-s, "
                  f"in hooks {res['hooks']:6.2%}, start-up {res['startup']:5.2f} s", flush=True)

    med = {s: {k: statistics.median(r[k] for r in results[s]) for k in results[s][0]} for s in SETTINGS}
    base = med["off"]
    import torch

    print(f"\n{args.steps} steps x {args.rounds} rounds, medians, {torch.get_num_threads()} threads; "
          f"overrides: {' '.join(overrides) or '(none)'}")
    print(f"{'diagnostics':>11}  {'steps/s':>8}  {'cost':>7}  {'steps/cpu-s':>11}  {'cpu cost':>8}  {'in hooks':>8}"
          f"  {'start-up s':>10}")
    for s in SETTINGS:
        m = med[s]
        print(f"{s:>11}  {m['wall']:8.2f}  {1 - m['wall'] / base['wall']:7.1%}  {m['cpu']:11.2f}"
              f"  {1 - m['cpu'] / base['cpu']:8.1%}  {m['hooks']:8.2%}  {m['startup']:10.2f}")
    print("cost = 1 - rate / rate(off); in hooks = time inside the diagnostics / steady wall time")
    if args.json is not None:
        write_json(args, overrides, results)


def paired_costs(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per setting, the median and range over rounds of each round's cost against ``off`` in the same round (%),
    of the share of wall time inside the diagnostics (%), of the rates and of the start-up seconds."""
    off = results["off"]
    values: dict[str, Any] = {}
    for setting, rounds in results.items():
        entry = {"steps_per_s": spread([r["wall"] for r in rounds]),
                 "steps_per_cpu_s": spread([r["cpu"] for r in rounds]),
                 "in_hooks_pct": spread([100 * r["hooks"] for r in rounds]),
                 "startup_s": spread([r["startup"] for r in rounds])}
        if setting != "off":
            entry["cost_pct"] = spread([100 * (1 - r["wall"] / o["wall"]) for r, o in zip(rounds, off, strict=True)])
            entry["cpu_cost_pct"] = spread([100 * (1 - r["cpu"] / o["cpu"]) for r, o in zip(rounds, off, strict=True)])
        values[setting] = entry
    return values


def write_json(args: argparse.Namespace, overrides: list[str], results: dict[str, list[dict[str, float]]]) -> None:
    """The results file the README's Diagnostics section quotes (format: ``benchmarks/results_io.py``)."""
    import torch

    values = {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "overrides": overrides,
              **paired_costs(results)}
    path = args.json.resolve()
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    command = " ".join(["python benchmarks/bench_diagnostics.py", *sys.argv[1:]]).replace(str(args.json), str(shown))
    write(path, command, values, torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
