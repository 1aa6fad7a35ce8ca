"""Throughput of the procedural shapes generator on one CPU thread.

Run with ``python benchmarks/bench_shapes.py``.  The data modules regenerate their splits at every
start-up, so rendering must stay far below the cost of training; the target is 10,000 images/s at
3x32x32 on a single thread (one thread because data generation may share the machine with training).
Each setting is timed several times and the best run is reported, which filters out interference from
other processes; the first (warm-up) run also pays for page faults of freshly allocated buffers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from experiments.data.shapes import render_shapes

TARGET_IMAGES_PER_S = 10_000.0
#: several smaller shapes per image, as a segmentation config would use
SEGMENTATION = {"shapes_per_image": (1, 4), "min_scale": 0.2, "max_scale": 0.45}


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (best is reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    settings: list[tuple[str, int, Callable[[], object]]] = [
        ("classification 3x32x32, 1 shape", 20_000, lambda: render_shapes(20_000, 32, 3, seed=0)),
        ("segmentation 3x64x64, 1-4", 2_000, lambda: render_shapes(2_000, 64, 3, seed=0, **SEGMENTATION)),
    ]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, best of {args.repeats}")
    for name, n, fn in settings:
        seconds = best_seconds(fn, args.repeats)
        rate = n / seconds
        print(
            f"{name:36s} n={n:6d}  {seconds:6.3f} s  {rate:9.0f} images/s  "
            f"{rate / TARGET_IMAGES_PER_S:5.2f}x the {TARGET_IMAGES_PER_S:.0f}/s target"
        )


if __name__ == "__main__":
    main()
