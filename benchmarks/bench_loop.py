"""Lightning Trainer vs a hand-written PyTorch loop on the default configuration.

Both train the same network (same init, same data, same batch order source) for the same number of
optimiser steps; the script prints steps/s for each and the ratio. The framework's promise is a
ratio close to 1: the in-memory data path and lean logging keep Lightning's overhead small.

    python benchmarks/bench_loop.py [--steps 200] [overrides...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch


def hand_written(cfg, steps: int) -> float:
    """The loop a user would write: shuffle, forward, loss, backward, step, scheduler step."""
    from experiments import build

    torch.manual_seed(cfg.seed)
    dm = build.build_datamodule(cfg)
    dm.setup()
    task = build.build_task(cfg)
    net, loss_fn = task.network, task.loss_fn
    opt = task.optimizer_factory(net.parameters())
    sched = task.scheduler_factory(opt, steps) if task.scheduler_factory else None
    loader = dm.train_dataloader()
    net.train()
    done, start = 0, time.perf_counter()
    while done < steps:
        for x, y in loader:
            loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            done += 1
            if done == steps:
                break
    return steps / (time.perf_counter() - start)


def with_lightning(cfg, steps: int) -> float:
    """The framework's own path: Trainer with the run's callbacks and TensorBoard logger, no validation."""
    from experiments import build

    torch.manual_seed(cfg.seed)
    dm = build.build_datamodule(cfg)
    dm.setup()
    task = build.build_task(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run_dir = tmp
        trainer = build.build_trainer(
            cfg, build.build_callbacks(cfg, task), build.build_logger(cfg),
            max_steps=steps, max_epochs=-1, limit_val_batches=0, enable_progress_bar=False,
        )
        start = time.perf_counter()
        trainer.fit(task, datamodule=dm)
        return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args, overrides = parser.parse_known_args()
    warnings.filterwarnings("ignore")
    from omegaconf import OmegaConf

    from experiments.config import compose

    cfg = compose(["trainer.accelerator=cpu", "diagnostics=off", *overrides])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = tempfile.mkdtemp()
    # warm-up both paths once (allocator, oneDNN kernels), then measure
    hand_written(cfg, 20)
    plain = hand_written(cfg, args.steps)
    framework = with_lightning(cfg, args.steps)
    print(f"hand-written loop : {plain:7.1f} steps/s")
    print(f"lightning trainer : {framework:7.1f} steps/s")
    print(f"ratio (lightning / hand-written): {framework / plain:.3f}")


if __name__ == "__main__":
    main()
