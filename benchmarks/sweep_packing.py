"""Wall time of a sweep of short ResNet-20 jobs run one after another, then packed onto the machine at once.

Both are real ``python -m experiments.train -m`` sweeps with the default diagnostics and loggers, over seeds
0..n-1: first with Hydra's basic launcher (one process, one job after another), then with
``hydra/launcher=packed hydra.launcher.n_jobs=k`` (k joblib worker processes; each job takes usable cores / k
torch threads and, on a GPU, a 1/k cap on the device memory: ``experiments.speed.settings``). The wall time of
each whole command is measured, process start-ups included, and every job must complete. ``OMP_NUM_THREADS`` is
removed from the sweeps' environment so that the framework's own thread rule applies.

    python benchmarks/sweep_packing.py [--device cuda] [--jobs 8] [--packed 8] [overrides...]

Target on a GPU: >= 3x less wall time packed. On a 2-core CPU expect about 1-1.5x: there is little to share.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESNET20 = ["model=resnet", "model.depth=20"]
#: a short job per device: a few hundred steps on a GPU, a few dozen on a CPU
BUDGETS = {
    "cuda": ["trainer=gpu", "data.train_size=10000", "data.val_size=1000", "data.test_size=1000",
             "data.batch_size=128", "trainer.max_epochs=2"],
    "cpu": ["trainer=cpu", "model.width=8", "data.image_size=16", "data.train_size=1024", "data.val_size=256",
            "data.test_size=256", "data.batch_size=64", "trainer.max_epochs=1"],
}


def sweep(name: str, root: Path, jobs: int, overrides: list[str]) -> tuple[float, int]:
    """Run one sweep; (wall seconds, completed jobs)."""
    directory = root / name
    seeds = ",".join(str(s) for s in range(jobs))
    command = [sys.executable, "-m", "experiments.train", "-m", *RESNET20, f"seed={seeds}",
               "trainer.enable_progress_bar=false", "print_config=false", f"hydra.sweep.dir={directory}", *overrides]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    records = [json.loads(p.read_text()) for p in directory.glob("*/metrics.json")]
    completed = sum(r.get("status") == "completed" for r in records)
    if result.returncode != 0 or completed != jobs:
        print(f"{name}: exit {result.returncode}, {completed} of {jobs} jobs completed\n{result.stderr[-3000:]}",
              file=sys.stderr)
    return wall, completed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--jobs", type=int, default=8, help="jobs in the sweep (seeds 0..jobs-1)")
    parser.add_argument("--packed", type=int, default=None, help="jobs at once when packed (default: --jobs)")
    parser.add_argument("--out", default=None, help="where the sweeps go (default: a temporary directory)")
    args, overrides = parser.parse_known_args()
    k = args.packed or args.jobs
    budget = [*BUDGETS[args.device], *overrides]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        one_by_one, done_seq = sweep("sequential", root, args.jobs, budget)
        print(f"sequential      : {one_by_one:8.1f} s  ({done_seq}/{args.jobs} jobs, one process)", flush=True)
        packed, done_packed = sweep("packed", root, args.jobs, [*budget, "hydra/launcher=packed",
                                                                f"hydra.launcher.n_jobs={k}"])
        print(f"{f'packed (k={k})':<16}: {packed:8.1f} s  ({done_packed}/{args.jobs} jobs)", flush=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {cores} cores"
    print(f"\n{args.jobs} ResNet-20 jobs on {name}; budget: {' '.join(budget)}")
    print(f"speed-up packed: {one_by_one / packed:.2f}x less wall time "
          f"(target on a GPU: >= 3x; on a 2-core CPU about 1-1.5x)")
    if done_seq != args.jobs or done_packed != args.jobs:
        sys.exit(1)


if __name__ == "__main__":
    main()
