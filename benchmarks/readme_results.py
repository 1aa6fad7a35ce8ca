"""The README's measured figures, regenerated: each item runs the README's own commands and writes its numbers.

    python benchmarks/readme_results.py all                      # every item below (make readme-numbers)
    python benchmarks/readme_results.py augmentation [--seeds 0,1,2]
    python benchmarks/readme_results.py own_data | vanishing | divergence | inspect

Items, each into ``docs/results/<item>.json`` (format: ``benchmarks/results_io.py``):

* ``augmentation``: ``-m experiment=augmentation`` over seeds; the final ``gap/acc`` and ``val/acc`` of each arm.
* ``own_data``: a folder of 900 shapes PNGs (six kinds, 150 each, 32x32) written here, then
  ``-m experiment=sigmoid_vs_relu data=image_folder`` on it and ``experiments.report``: the report's rows.
* ``vanishing``: ``vanishing_ratio`` at initialisation of the deep plain net (sigmoid vs relu) over seeds.
* ``divergence``: the README's diverging command over seeds: its ``error:`` line (seed 0) and the gradient norms.
* ``inspect``: ``python -m experiments.inspect --effective-rf``'s output.

Runs go to a temporary ``EXPERIMENTS_OUTPUT_DIR``; nothing is written into the checkout but the results files.
The torch thread count is the framework's own rule (``$OMP_NUM_THREADS`` if set) and is recorded with the machine:
run it on an idle machine without other work, since the numbers of a loaded machine are not the README's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_io import REPO, RESULTS, spread, write  # noqa: E402

SCRIPT = "python benchmarks/readme_results.py"
DIVERGE = ["optimizer=sgd", "optimizer.lr=1e4", "scheduler=none"]
DEEP_PLAIN = ["model.stages=4", "model.convs_per_stage=2", "norm=none", "init=standard"]
#: the measurement at initialisation needs one training step; the rest of the loop is cut to a batch
ONE_STEP = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1",
            "+trainer.limit_test_batches=1"]
OWN_DATA_KINDS = ("circle", "square", "triangle", "cross", "ring", "star")
OWN_DATA_PER_KIND = 150
OWN_DATA_COLUMNS = ("group", "n", "test/acc", "val/acc", "train/acc", "vanishing_ratio")


def train(args: Sequence[str], out: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m experiments.train ARGS`` with its outputs under ``out``; stdout and stderr captured."""
    env = {**os.environ, "EXPERIMENTS_OUTPUT_DIR": str(out)}
    command = [sys.executable, "-m", "experiments.train", *args, "trainer.enable_progress_bar=false"]
    print("$", " ".join(["python -m experiments.train", *args]), flush=True)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        sys.exit(f"the run failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result


def records(out: Path) -> list[dict[str, Any]]:
    """Every ``metrics.json`` under ``out``, sorted by run dir."""
    return [json.loads(p.read_text()) for p in sorted(out.rglob("metrics.json"))]


def threads_of(runs: list[dict[str, Any]]) -> int | None:
    """The torch threads the runs trained with (``speed.threads``), recorded with the machine."""
    found = {r.get("speed", {}).get("threads") for r in runs} - {None}
    return found.pop() if len(found) == 1 else None


def seeds_arg(seeds: Sequence[int]) -> str:
    """The sweep's ``seed=0,1,2`` override."""
    return "seed=" + ",".join(str(s) for s in seeds)


# -- items ------------------------------------------------------------------------------------------------------


def augmentation(seeds: Sequence[int], tmp: Path, out_dir: Path = RESULTS) -> Path:
    """Final gap/acc (train - val accuracy) and val/acc per arm of ``experiment=augmentation``, over seeds."""
    args = ["-m", "experiment=augmentation", seeds_arg(seeds)]
    train(args, tmp)
    runs = [r for r in records(tmp) if r["status"] == "completed"]
    values: dict[str, Any] = {"seeds": list(seeds), "epochs": runs[0]["epochs"]}
    for arm in ("none", "flip", "crop_flip"):
        mine = [r for r in runs if r["choices"]["augment"] == arm]
        if len(mine) != len(seeds):
            sys.exit(f"augment={arm}: {len(mine)} completed runs, expected {len(seeds)}")
        values[arm] = {"gap_acc": spread([r["overfitting"]["gap/acc"][-1] for r in mine]),
                       "val_acc": spread([r["metrics"]["val/acc"] for r in mine])}
    return write(out_dir / "augmentation.json", f"{SCRIPT} augmentation", values, torch_threads=threads_of(runs),
                 runs=["python -m experiments.train " + " ".join(args)])


def write_shapes_folder(root: Path, seed: int = 0) -> None:
    """The README's own-data study folder: ``root/<kind>/<i>.png``, 150 RGB 32x32 images per shape kind."""
    import numpy as np
    import torch
    from PIL import Image

    from experiments.data.shapes import render_shapes

    sample = render_shapes(OWN_DATA_PER_KIND * len(OWN_DATA_KINDS), 32, 3, seed=seed, kinds=OWN_DATA_KINDS)
    pixels = (sample.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    for i, (image, label) in enumerate(zip(pixels.numpy(), sample.labels.tolist(), strict=True)):
        folder = root / OWN_DATA_KINDS[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image)).save(folder / f"{i:04d}.png")


def report_rows(report_md: str, columns: Sequence[str]) -> list[str]:
    """The first Markdown table of ``report.md`` that has every one of ``columns``, cut to them (header first)."""
    lines = report_md.splitlines()
    for start, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not set(columns) <= set(cells):
            continue
        keep = [cells.index(c) for c in columns]
        table = []
        for row in lines[start:]:
            if not row.startswith("|"):
                break
            parts = [c.strip() for c in row.strip().strip("|").split("|")]
            table.append("| " + " | ".join(parts[k] for k in keep) + " |")
        table[1] = "|" + "|".join("---" if k == 0 else "---:" for k in range(len(keep))) + "|"
        return table
    raise SystemExit(f"report.md has no table with the columns {', '.join(columns)}")


def own_data(seeds: Sequence[int], tmp: Path, out_dir: Path = RESULTS) -> Path:
    """The sigmoid_vs_relu study on a folder of PNGs: the report's rows, split sizes and the sigmoid's ratio."""
    folder = tmp / "shapes_folder"
    write_shapes_folder(folder)
    out = tmp / "out"
    args = ["-m", "experiment=sigmoid_vs_relu", "data=image_folder", f"data.root={folder}"]
    train(args, out)
    sweep = next(p.parent for p in out.rglob("multirun.yaml"))
    subprocess.run([sys.executable, "-m", "experiments.report", str(sweep)], cwd=REPO, check=True,
                   capture_output=True, text=True)
    runs = records(out)
    ratio = {r["choices"]["activation"]: r["vanishing_ratio"] for r in runs}
    values = {
        "images": OWN_DATA_PER_KIND * len(OWN_DATA_KINDS),
        "per_class": OWN_DATA_PER_KIND,
        "split_sizes": runs[0]["split_sizes"],
        "vanishing_ratio": ratio,
        "report_rows": report_rows((sweep / "report.md").read_text(), OWN_DATA_COLUMNS),
    }
    command = "python -m experiments.train " + " ".join(args).replace(str(folder), "<folder>")
    return write(out_dir / "own_data.json", f"{SCRIPT} own_data", values, torch_threads=threads_of(runs),
                 runs=[command, "python -m experiments.report <sweep dir>"])


def vanishing(seeds: Sequence[int], tmp: Path, out_dir: Path = RESULTS) -> Path:
    """``vanishing_ratio`` at initialisation of the deep plain net, sigmoid vs relu, over seeds."""
    args = ["-m", *DEEP_PLAIN, "activation=sigmoid,relu", seeds_arg(seeds), *ONE_STEP]
    train(args, tmp)
    runs = records(tmp)
    values: dict[str, Any] = {"seeds": list(seeds)}
    for act in ("sigmoid", "relu"):
        values[act] = spread([r["vanishing_ratio"] for r in runs if r["choices"]["activation"] == act])
    return write(out_dir / "vanishing.json", f"{SCRIPT} vanishing", values, torch_threads=threads_of(runs),
                 runs=["python -m experiments.train " + " ".join(args)])


def divergence(seeds: Sequence[int], tmp: Path, out_dir: Path = RESULTS) -> Path:
    """The README's diverging command: its printed ``error:`` line (seed 0) and the norms that stopped it."""
    norms, line, layers, runs = [], None, set(), []
    for seed in seeds:
        out = tmp / f"seed{seed}"
        result = train([*DIVERGE, *([f"seed={seed}"] if seed else [])], out, check=False)
        (record,) = records(out)
        runs.append(record)
        if record["status"] != "failed" or "diverged" not in record:
            sys.exit(f"seed {seed}: the run did not diverge ({record['status']}): {result.stderr[-2000:]}")
        norms.append(float(record["diverged"]["value"]))
        layers.add(record["diverged"]["layer"])
        if seed == seeds[0]:
            error = [x for x in result.stderr.splitlines() if x.startswith("error: training diverged")]
            run_dir = str(out / "runs")
            line = error[-1].replace(run_dir, "outputs/runs")
            line = re.sub(r"outputs/runs/[^ ]+?/checkpoints/", "outputs/runs/.../checkpoints/", line)
    values = {"seeds": list(seeds), "error_line": line, "grad_norm": spread(norms), "layers": sorted(layers)}
    return write(out_dir / "divergence.json", f"{SCRIPT} divergence", values, torch_threads=threads_of(runs),
                 runs=["python -m experiments.train " + " ".join(DIVERGE)])


def inspect(seeds: Sequence[int], tmp: Path, out_dir: Path = RESULTS) -> Path:
    """``python -m experiments.inspect --effective-rf``'s printed lines, the heat map's folder as the default."""
    result = subprocess.run([sys.executable, "-m", "experiments.inspect", "--effective-rf", "--out", str(tmp)],
                            cwd=REPO, capture_output=True, text=True, check=True)
    lines = ["$ python -m experiments.inspect --effective-rf"]
    lines += [x.replace(str(tmp), "outputs/inspect").rstrip() for x in result.stdout.splitlines()]
    return write(out_dir / "inspect.json", f"{SCRIPT} inspect", {"output_lines": lines},
                 runs=["python -m experiments.inspect --effective-rf"])


ITEMS: dict[str, Callable[[Sequence[int], Path, Path], Path]] = {
    "augmentation": augmentation, "own_data": own_data, "vanishing": vanishing, "divergence": divergence,
    "inspect": inspect,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("item", choices=[*ITEMS, "all"])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the items measured over seeds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results files (default: %(default)s)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in ITEMS if args.item == "all" else [args.item]:
        with tempfile.TemporaryDirectory(prefix=f"readme-{name}-") as tmp:
            ITEMS[name](seeds, Path(tmp), args.out)


if __name__ == "__main__":
    main()
