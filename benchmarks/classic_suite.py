"""The six classic ablations of ``conf/experiment/`` at ``scale=gpu``, 3 seeds each, packed onto one GPU.

Each study's full size is its ``conf/budget/<name>/gpu.yaml``, chosen by ``scale=gpu`` (README "Scale"), so it is
stated once; this script starts the six sweeps at the same time, each a
``python -m experiments.train -m experiment=<name> scale=gpu seed=0,1,2 hydra/launcher=packed`` sweep. Its
``hydra.launcher.n_jobs`` is its share of ``--jobs`` concurrent jobs (in proportion to its number of jobs, at least
one), and every job is told the total (``trainer.packed_jobs``) so that threads, its GPU memory cap and its
device-resident data budget are sized for all of them. It prints each sweep's wall time and the total, the goal
being <= 10 minutes on one H200-class GPU, and the report commands.

    python benchmarks/classic_suite.py [--jobs 32] [--seeds 3] [--out DIR] [overrides for every job...]
    python benchmarks/classic_suite.py --smoke          # a CPU check of the plumbing with tiny sizes (1 seed)

Extra overrides go to every job (e.g. ``trainer.compile=reduce-overhead``). ``benchmarks/classic_suite.sh`` and
``make classic-suite`` run this script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("plain_vs_residual", "sigmoid_vs_relu", "pooling", "upsampling", "mse_vs_ce", "dilation")
#: the scale the suite runs at (conf/scale/gpu.yaml and each study's conf/budget/<name>/gpu.yaml)
SCALE = "scale=gpu"
#: --smoke: these replace the GPU sizes (and trainer=gpu), so that every job of every sweep takes seconds on a CPU
SMOKE = {"trainer": "cpu", "data.train_size": "128", "data.val_size": "32", "data.test_size": "32",
         "data.batch_size": "32", "trainer.max_epochs": "1", "model.width": "4", "data.image_size": None}


def gpu_sizes(name: str) -> list[str]:
    """The overrides that put a study at full size: the scale switch (its numbers live in conf/budget/)."""
    return [SCALE]


def grid(name: str, overrides: list[str]) -> dict[str, str]:
    """The study's sweep at these overrides, as Hydra composes it (the scale's budget may widen the grid)."""
    from hydra import compose, initialize_config_dir

    from experiments.config import conf_dir

    fixed = [o for o in overrides if "," not in o.split("=", 1)[-1]]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", *fixed], return_hydra_config=True)
    return {str(k): str(v) for k, v in cfg.hydra.sweeper.params.items()}


def grid_size(name: str, overrides: list[str]) -> int:
    """Jobs per seed: the product of the study's sweep values, a command-line sweep of a key replacing its own."""
    params = grid(name, overrides)
    for token in overrides:
        key, value = token.split("=", 1)
        if "," in value:
            params[key] = value
    return math.prod(len(str(v).split(",")) for v in params.values())


def shares(jobs: dict[str, int], total: int) -> dict[str, int]:
    """Concurrent jobs per sweep: proportional to its job count (largest remainder), at least 1, at most its jobs."""
    whole = sum(jobs.values())
    exact = {name: total * n / whole for name, n in jobs.items()}
    share = {name: max(1, min(jobs[name], int(x))) for name, x in exact.items()}
    for name in sorted(exact, key=lambda n: exact[n] - int(exact[n]), reverse=True):
        if sum(share.values()) >= total:
            break
        if share[name] < jobs[name]:
            share[name] += 1
    return share


def smoke_sizes(tokens: list[str]) -> list[str]:
    """The study's full-size overrides with the sizes replaced by tiny ones (the grid, scale=gpu's, stays)."""
    kept = [t for t in tokens if t.split("=", 1)[0] not in SMOKE]
    return kept + [f"{k}={v}" for k, v in SMOKE.items() if v is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None, help="jobs running at once (default 32; --smoke: 2)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default 3; --smoke: 1)")
    parser.add_argument("--out", default=None, help="sweep dirs go here (default outputs/classic_suite/<time>)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the plumbing only")
    args, extra = parser.parse_known_args()
    concurrent = args.jobs or (2 if args.smoke else 32)
    seeds = args.seeds or (1 if args.smoke else 3)
    out = Path(args.out or REPO / "outputs" / "classic_suite" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)

    sizes = {name: gpu_sizes(name) for name in EXPERIMENTS}
    jobs = {name: grid_size(name, sizes[name]) * seeds for name in EXPERIMENTS}
    share = shares(jobs, concurrent)
    packed = sum(share.values())
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the framework sizes threads itself
    started = time.perf_counter()
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    for name in EXPERIMENTS:
        overrides = smoke_sizes(sizes[name]) if args.smoke else sizes[name]
        command = [sys.executable, "-m", "experiments.train", "-m", f"experiment={name}",
                   f"seed={','.join(str(s) for s in range(seeds))}", *overrides, "hydra/launcher=packed",
                   f"hydra.launcher.n_jobs={share[name]}", f"trainer.packed_jobs={packed}",
                   "trainer.enable_progress_bar=false", "print_config=false", f"hydra.sweep.dir={out / name}", *extra]
        print(f"{name}: {jobs[name]} jobs, {share[name]} at a time\n  {' '.join(command[1:])}", flush=True)
        log = (out / f"{name}.log").open("w")
        running[name] = (subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
                         time.perf_counter())

    print()
    walls: dict[str, float] = {}
    failed = 0
    while running:
        for name, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            walls[name] = time.perf_counter() - start
            del running[name]
            records = [json.loads(p.read_text()) for p in (out / name).glob("*/metrics.json")]
            done = sum(r.get("status") == "completed" for r in records)
            failed += jobs[name] - done
            print(f"{name:<18} {walls[name]:8.1f} s  {done}/{jobs[name]} jobs completed (exit {proc.returncode})",
                  flush=True)
        time.sleep(1)
    total = time.perf_counter() - started
    print(f"\nclassic suite: {sum(jobs.values())} jobs, {packed} at a time, total wall time {total:.1f} s "
          f"({total / 60:.1f} min; goal on one H200-class GPU: <= 10 min){' [smoke: CPU, tiny sizes]' * args.smoke}")
    print(f"reports: for d in {out}/*/; do python -m experiments.report $d; done")
    if failed:
        print(f"{failed} job(s) did not complete: see {out}/<experiment>.log", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
