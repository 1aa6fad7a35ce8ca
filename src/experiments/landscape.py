"""``python -m experiments.landscape RUN_DIR|SWEEP_DIR... [ckpt=best|last|averaged|PATH] [--split train|val] ...``

The loss landscape of a finished run (or of every completed run of a sweep dir), from nothing but its run dir
(:mod:`experiments.diagnostics.landscape` says what is measured and why): the interpolation from
``checkpoints/init.ckpt`` to the checkpoint, 1D and 2D slices along filter-normalised random directions, and the
Hessian's top eigenvalues, |λ_min/λ_max| and trace.

Writes ``<run dir>/landscape.json``, the figures under ``<run dir>/figures/landscape__*/`` and into the run's
TensorBoard (a new event file beside its training events: ``~landscape/...``, ``~curvature/...``), and, for the
run's own tested checkpoint of a completed run, adds ``train/top_eig``, ``train/hessian_trace``, ``train/eig_ratio``
and ``train/loss_rise`` to its ``metrics.json`` so that ``python -m experiments.report`` shows them across seeds.

Exit status: 0 done; 2 bad input (run dir, checkpoint, an option), one line, no traceback. Only argparse and
OmegaConf are imported before the arguments are parsed, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from experiments.errors import ConfigError

#: option -> (settings field, type, smallest value)
NUMERIC = {"images": (int, 1), "grid": (int, 0), "slice_points": (int, 1), "interpolation_points": (int, 0),
           "span": (float, 1e-9), "radius": (float, 0.0), "eigenvalues": (int, 1), "lanczos_iters": (int, 2),
           "trace_samples": (int, 1), "curvature_images": (int, 1), "batch_size": (int, 1), "seed": (int, 0)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.landscape",
        description="Loss landscape of a run: interpolation from its initial weights, slices along "
                    "filter-normalised directions (contour and surface), and the Hessian's top eigenvalues and "
                    "trace. Figures to <run dir>/figures and its TensorBoard, numbers to landscape.json and "
                    "metrics.json.")
    parser.add_argument("targets", nargs="+", metavar="RUN_DIR|SWEEP_DIR|ckpt=...",
                        help="run dirs (e.g. outputs/runs/<date>/<time>), or sweep dirs (every completed run in "
                             "them); ckpt=best (default: the weights the run's test metrics describe), last, "
                             "averaged or a .ckpt file")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="of a sweep, only the runs with this override (repeatable), e.g. --where model.depth=32")
    parser.add_argument("--split", default="train", help="whose loss: train (default, the objective) or val")
    parser.add_argument("--images", type=float, default=256, help="images for interpolation and slices (256)")
    parser.add_argument("--grid", type=float, default=11, help="2D grid points per axis; 0: no 2D slice (11)")
    parser.add_argument("--slice-points", type=float, default=21, help="1D slice points per direction (21)")
    parser.add_argument("--interpolation-points", type=float, default=21,
                        help="interpolation points over α in [-0.5, 1.5]; 0: none (21)")
    parser.add_argument("--span", type=float, default=1.0, help="slices cover [-span, span] (1.0)")
    parser.add_argument("--radius", type=float, default=0.5, help="radius of loss_rise, on the slice grid (0.5)")
    parser.add_argument("--eigenvalues", type=float, default=3, help="top Hessian eigenvalues (3)")
    parser.add_argument("--lanczos-iters", type=float, default=20, help="Lanczos steps (20)")
    parser.add_argument("--trace-samples", type=float, default=10, help="Hutchinson probes for the trace (10)")
    parser.add_argument("--curvature-images", type=float, default=256, help="images for the curvature (256)")
    parser.add_argument("--batch-size", type=float, default=128, help="images per forward pass (128)")
    parser.add_argument("--seed", type=float, default=0, help="seed of the directions and probes (0)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def settings_from(args: argparse.Namespace) -> Any:
    """The :class:`~experiments.diagnostics.landscape.LandscapeSettings` of the parsed options, each checked: one
    sentence naming the option, its value and the fix otherwise."""
    from experiments.diagnostics.landscape import LandscapeSettings

    if args.split not in ("train", "val"):
        raise ConfigError("--split", args.split, "the landscape is measured on the train or val split",
                          "use --split train or --split val")
    values: dict[str, Any] = {"split": args.split}
    for name, (kind, least) in NUMERIC.items():
        value = getattr(args, name)
        option = f"--{name.replace('_', '-')}"
        if kind is int and value != int(value):
            raise ConfigError(option, value, "it must be a whole number", f"use e.g. {option} {int(value)}")
        if value < least:
            raise ConfigError(option, value, f"it must be at least {least:g}", f"use e.g. {option} {least:g}")
        values[name] = kind(value)
    if values["slice_points"] > 1 and values["radius"] > values["span"]:
        raise ConfigError("--radius", values["radius"], f"it lies outside the slices' span ({values['span']:g})",
                          "use a radius at most --span")
    known = {f.name for f in fields(LandscapeSettings)}
    return LandscapeSettings(**{k: v for k, v in values.items() if k in known})


def parse_targets(targets: Sequence[str], where: Sequence[str] = ()) -> tuple[list[Path], str]:
    """(run dirs, checkpoint spec): a word with ``=`` is the ``ckpt=`` option; a directory holding a run's config
    is a run dir; any other directory is a sweep, standing for every completed run below it (in name order) whose
    recorded overrides include every ``where`` (``model.depth=32``)."""
    from experiments.run.layout import PRETRAINING, RunDir

    spec, dirs = "best", []
    for target in targets:
        key, sep, value = target.partition("=")
        if sep:
            if key != "ckpt" or not value:
                raise ConfigError(key, value, "the only option is ckpt=best|last|averaged|PATH", "use e.g. ckpt=last")
            spec = value
            continue
        path = Path(target)
        if path.is_dir() and RunDir(path).config_file() is None:
            records = {p.parent: RunDir(p.parent).read_record() or {} for p in path.rglob("metrics.json")
                       if p.parent.name != PRETRAINING}
            runs = sorted(run for run, record in records.items() if record.get("status") == "completed"
                          and set(where) <= set(record.get("overrides") or []))
            if not runs:
                wanted = f" with {' '.join(where)}" if where else ""
                raise ConfigError("RUN_DIR", path, "it is neither a run dir nor a sweep holding a completed run"
                                  + wanted, "point it at a run dir or sweep dir written by python -m experiments.train")
            dirs += runs
        else:
            dirs.append(path)
    if not dirs:
        raise ConfigError("RUN_DIR", "", "no run dir was given", "name a run dir or a sweep dir")
    return dirs, spec


def landscape(run_dir: str | Path, ckpt: str = "best", settings: Any = None, accelerator: str = "auto",
              progress: bool = True) -> dict[str, Any]:
    """Measure, draw and record the landscape of one run's checkpoint; returns the saved dict plus ``saved``,
    ``figures`` and ``recorded`` (whether metrics.json took the numbers)."""
    from experiments import build
    from experiments.diagnostics import landscape as lsd
    from experiments.evaluate import is_tested_checkpoint, load_task
    from experiments.run.layout import RunDir, write_json
    from experiments.run.record import RunRecord

    run_dir = Path(run_dir)
    settings = settings or lsd.LandscapeSettings()
    cfg, path, task = load_task(run_dir, ckpt, accelerator)
    datamodule = build.build_datamodule(cfg)
    datamodule.setup("fit")
    train, val = lsd.split_tensors(datamodule, "train"), lsd.split_tensors(datamodule, "val")
    if train is None:
        raise ConfigError("RUN_DIR", run_dir, "its data module holds no training split in memory",
                          "use a run whose data option loads its splits (every built-in one does)")
    run = RunDir(run_dir)
    init = lsd.initial_params(run.init_checkpoint, task.network)
    result = lsd.measure(task, train, val, init, settings, progress=progress)
    result["checkpoint"] = str(path)
    result["initial_weights"] = str(run.init_checkpoint) if init is not None else None
    write_json(run.landscape, result)
    step = _checkpoint_step(path)
    drawn = _draw(run, result, step)
    _to_tensorboard(run, result, drawn, step)
    recorded = is_tested_checkpoint(run_dir, path) and RunRecord.add_metrics(run_dir, lsd.metrics_of(result))
    return {**result, "saved": str(run.landscape), "figures": [str(p) for p in drawn.values()],
            "recorded": recorded}


def _checkpoint_step(path: Path) -> int:
    from experiments.run.checkpoints import load_checkpoint

    return int(load_checkpoint(path).get("global_step", 0) or 0)


def _draw(run: Any, result: dict[str, Any], step: int) -> dict[str, Path]:
    """Each figure as ``figures/<tag>/step_<n>.png`` (the same place a diagnostic's figure goes)."""
    from PIL import Image

    from experiments.diagnostics.landscape import figures
    from experiments.diagnostics.sinks import render_figure

    drawn = {}
    for tag, figure in figures(result, title=run.root.name).items():
        path = run.figure(tag, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_figure(figure)).save(path)
        drawn[tag] = path
    return drawn


def _to_tensorboard(run: Any, result: dict[str, Any], drawn: dict[str, Path], step: int) -> Path | None:
    """A new event file in the run's TensorBoard folder (TensorBoard merges every event file of a run), with the
    figures as images and the numbers as scalars under their TensorBoard names; None for a run without one."""
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    from experiments.diagnostics.landscape import scalars_of
    from experiments.run.layout import TENSORBOARD
    from experiments.run.tensorboard import existing_version, tensorboard_tag

    root = run.root / TENSORBOARD
    version = existing_version(root)
    if version is None:
        return None
    folder = root / version if version else root
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for tag, value in scalars_of(result).items():
            writer.add_scalar(tensorboard_tag(tag), value, step)
        for tag, path in drawn.items():
            writer.add_image(tensorboard_tag(tag), np.asarray(Image.open(path).convert("RGB")), step,
                             dataformats="HWC")
    finally:
        writer.close()
    return folder


def _print(result: dict[str, Any]) -> None:
    curvature = result.get("curvature") or {}
    split = result["split"]
    print(f"checkpoint: {result['checkpoint']}")
    print(f"{split} loss at the checkpoint: {result['loss']:.4f} ({result['images']} images"
          + (f"; {result['batch_norm']}" if result.get("batch_norm") else "") + ")")
    if "interpolation" in result:
        curve = result["interpolation"][split]
        print(f"interpolation from init.ckpt: loss {curve['loss'][0]:.4g} at α=-0.5 … "
              f"{max(curve['loss']):.4g} max … {curve['loss'][-1]:.4g} at α=1.5")
    elif result.get("initial_weights") is None:
        print("interpolation: skipped (the run has no checkpoints/init.ckpt: it predates it)")
    rise = result.get("loss_rise")
    radius = result["settings"]["radius"]
    print(f"loss rise at filter-normalised radius {radius:g}: {rise:.4g}" if rise is not None else
          f"loss rise at radius {radius:g}: not on the slice grid")
    tops = ", ".join(f"{v:.4g}" for v in curvature.get("top_eigenvalues", []))
    print(f"Hessian ({curvature.get('images')} images, {curvature.get('batches')} batches): top eigenvalues {tops}; "
          f"λ_min {curvature.get('min_eig', float('nan')):.4g}; |λ_min/λ_max| "
          f"{curvature.get('min_max_ratio', float('nan')):.4g}; trace {curvature.get('trace', float('nan')):.4g} "
          f"± {curvature.get('trace_stderr', float('nan')):.2g}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # ckpt=... may follow the options
    try:
        settings = settings_from(args)
        run_dirs, ckpt = parse_targets(args.targets, args.where)
        for run_dir in run_dirs:
            if len(run_dirs) > 1:
                print(f"== {run_dir}")
            result = landscape(run_dir, ckpt=ckpt, settings=settings, accelerator=args.accelerator,
                               progress=not args.no_progress)
            _print(result)
            print(f"saved: {result['saved']}" + (" (and metrics.json)" if result["recorded"] else ""))
            for figure in result["figures"]:
                print(f"figure: {figure}")
    except ConfigError as err:  # includes CheckpointError: one sentence, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
