"""``python -m experiments.explain RUN_DIR [--images DIR] [ckpt=best|last|PATH] [--class NAME|INDEX] [--n 8]
[--out DIR] [--seed S] [--steps K] [--sanity [cascade|all]]``

What a trained run's predictions rest on, per image, through Captum (``analysis/attribution.py``):

* **Grad-CAM** on the last conv layer of the encoder, upsampled to the image, and **Integrated Gradients** from the
  baseline 0 in standardised space, i.e. the training split's mean colour (the images are standardised with it), in
  ``--steps`` steps.
* **Classification:** maps for the predicted class and for the true class (``--class`` names another to compare
  with instead); the true class is known for the run's own test images (``--n`` of them, drawn with ``--seed``),
  not for a folder of images (``--images DIR``, read as ``evaluate --predict`` reads it).
* **Segmentation:** maps for one class (``--class``, required), explaining the sum of that class's logits over the
  pixels the network predicts as that class (Captum attributes one number per image; the pixel selection is fixed
  from the trained network's prediction).
* **Sanity check** (``--sanity``; Adebayo et al., NeurIPS 2018): the weights re-initialised from the top layer down
  (``cascade``, the default) or all at once (``all``), and the mean Spearman rank correlation between the trained
  and the randomised maps printed and stored: maps that barely change would explain the image, not the model.

Writes one figure per image (image, Grad-CAM overlay, IG map; titles with class names and probabilities) and
``explain.json`` (per image: file or test index, true and predicted class, probabilities, each map's statistics;
the sanity check) to ``<run dir>/figures/explain/`` (or ``--out``), and a grid of the images and maps to the run's
TensorBoard as a new event file in its TensorBoard folder (a finished run's logger is closed; TensorBoard merges
event files of one folder), under ``~explain/``.

Exit status: 0 done; 2 bad input (run dir, checkpoint, class, folder), one sentence and no traceback. Only argparse
and OmegaConf are imported before the arguments are parsed, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf.errors import OmegaConfBaseException

from experiments.errors import ConfigError
from experiments.evaluate import (
    _data_stats,
    _task_with_weights,
    class_names,
    folder_images,
    load_run_config,
    parse_options,
    resolve_checkpoint,
)
from experiments.run.layout import EXPLAIN_RECORD, RunDir, write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.explain",
        description="Grad-CAM and Integrated Gradients maps of what a run's predictions rest on (Captum), per image: "
                    "figures, explain.json and a TensorBoard grid; --sanity re-initialises the weights and reports "
                    "how much the maps change (Adebayo et al. 2018).",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir, e.g. outputs/runs/<date>/<time>")
    parser.add_argument("options", nargs="*", metavar="ckpt=best|last|PATH",
                        help="which checkpoint: the run's best (default) or last, or a .ckpt file")
    parser.add_argument("--images", type=Path, metavar="DIR", help="explain every image in DIR (default: --n of the "
                        "run's test images, whose true classes are known)")
    parser.add_argument("--class", dest="cls", metavar="NAME|INDEX", help="segmentation: the class to explain "
                        "(required); classification: a class to compare with instead of the true one")
    parser.add_argument("--n", type=int, default=8, help="how many test images (default 8)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where figures and explain.json go "
                        "(default <run dir>/figures/explain)")
    parser.add_argument("--seed", type=int, default=0, help="which test images, and the re-initialisation")
    parser.add_argument("--steps", type=int, default=32, help="Integrated Gradients' interpolation steps")
    parser.add_argument("--sanity", nargs="?", const="cascade", choices=("cascade", "all"),
                        help="model-randomisation check: re-initialise from the top layer down (cascade) or all at "
                             "once, and report the rank correlation of the maps")
    return parser


def _resolve_class(spec: str, names: Sequence[str]) -> int:
    """``--class`` as an index into the run's classes, by name or number."""
    if spec in names:
        return list(names).index(spec)
    if spec.lstrip("-").isdigit() and 0 <= int(spec) < len(names):
        return int(spec)
    raise ConfigError("--class", spec, "the run has no such class", f"use one of {', '.join(names)} or 0-"
                      f"{len(names) - 1}")


def _inputs(cfg: Any, run_dir: Path, images: Path | None, n: int, seed: int) -> tuple[Any, Any, list[str]]:
    """(standardised images, their targets or None, a label for each): a folder read as ``evaluate --predict`` reads
    it, or ``n`` test images drawn with ``seed``."""
    import torch

    if images is not None:
        from experiments.run.predict import load_images

        files = folder_images("--images", images)
        mean, std = _data_stats(cfg, run_dir)
        return load_images(files, int(cfg.data.image_size), int(cfg.data.channels), mean, std)[0], None, \
            [f.name for f in files]
    if n < 1:
        raise ConfigError("--n", n, "it must be at least 1", "use e.g. --n 8")
    from experiments import build

    datamodule = build.build_datamodule(cfg)
    datamodule.setup("test")
    split = datamodule.splits["test"]
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()
    pairs = [split[i] for i in order]
    return torch.stack([p[0] for p in pairs]), torch.stack([torch.as_tensor(p[1]) for p in pairs]), \
        [f"test_{i:05d}" for i in order]


def explain(run_dir: str | Path, images: str | Path | None = None, ckpt: str = "best", cls: str | None = None,
            n: int = 8, out: str | Path | None = None, seed: int = 0, steps: int = 32,
            sanity: str | None = None) -> dict[str, Any]:
    """Compute, draw and save the maps (see the module doc); returns the body of ``explain.json`` plus ``saved``."""
    import torch

    from experiments.analysis import attribution as attr
    from experiments.analysis import explain_figures as figs
    from experiments.specs import run_task

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    task_kind = run_task(cfg)  # the data's task, or the model's own (an autoencoder reconstructs)
    if task_kind not in ("classification", "segmentation"):
        raise ConfigError("RUN_DIR", run_dir, f"it is a {task_kind} run", "explain a classification or segmentation "
                          "run")
    if steps < 2:
        raise ConfigError("--steps", steps, "Integrated Gradients needs at least 2 steps", "use e.g. --steps 32")
    path = resolve_checkpoint(run_dir, ckpt)
    x, targets, labels = _inputs(cfg, run_dir, Path(images) if images is not None else None, n, seed)
    task = _task_with_weights(cfg, path).eval()
    network = task.network.float()
    with torch.no_grad():
        num_classes = int(network(x[:1]).shape[1])
    names = class_names(cfg, num_classes, run_dir)
    segmentation = task_kind == "segmentation"
    if segmentation and cls is None:
        raise ConfigError("--class", "(not given)", "a segmentation run explains one class", f"add --class with one of "
                          f"{', '.join(names)}")
    chosen = _resolve_class(cls, names) if cls is not None else None
    layer = attr.gradcam_layer(network)
    mean, std = _data_stats(cfg, run_dir)
    record: dict[str, Any] = {
        "run_dir": str(run_dir), "checkpoint": str(path), "task": task_kind, "layer": layer, "steps": steps,
        "baseline": "zero in standardised space: the training split's mean colour", "class_names": names,
        "images": [],
    }
    if segmentation:
        objective, probs = attr.segmentation_objective(network, x, chosen)
        maps = attr.attribute(network, layer, objective, x, steps)
        rows = [{"objective": objective, "maps": maps, "class": chosen}]
        record["class"] = names[chosen]
    else:
        with torch.no_grad():
            probs = network(x).float().softmax(dim=1)
        predicted = probs.argmax(dim=1)
        compare = torch.full_like(predicted, chosen) if chosen is not None else targets
        rows = []
        for role, classes in (("predicted", predicted), ("true" if chosen is None else "chosen", compare)):
            if classes is not None:
                objective = attr.class_objective(network, classes)
                rows.append({"role": role, "objective": objective, "classes": classes,
                             "maps": attr.attribute(network, layer, objective, x, steps)})
    for i, label in enumerate(labels):
        record["images"].append(figs.image_record(i, label, names, probs, targets, rows, segmentation,
                                                  images is None))
    out = Path(out) if out is not None else RunDir(run_dir).explain
    figures = figs.draw_all(out, x, labels, record["images"], rows, mean, std, names, probs, segmentation)
    if sanity:
        first = rows[0]
        check = attr.randomisation_check(network, layer, first["objective"], x, first["maps"], sanity, steps, seed)
        record["sanity"] = {"explained": first.get("role", names[chosen] if chosen is not None else ""), **check}
    record["figures"] = [str(f) for f in figures]
    record["tensorboard"] = _write_tensorboard(run_dir, {row.get("role", "class"): figs.tensorboard_grid(
        x, row["maps"], mean, std) for row in rows})
    saved = out / EXPLAIN_RECORD
    write_json(saved, record)
    return {**record, "saved": str(saved)}


def _write_tensorboard(run_dir: Path, grids: dict[str, Any]) -> str:
    """Each grid as ``~explain/<role>`` (the run's other non-curve sections' prefix) in a new event file of the run's
    TensorBoard folder: a finished run's logger is closed, and TensorBoard reads every event file of a folder.
    Returns the folder."""
    from torch.utils.tensorboard import SummaryWriter

    from experiments.run.tensorboard import tensorboard_tag

    run = RunDir(run_dir)
    folder = run.tensorboard_events() or run.tensorboard
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for role, grid in grids.items():
            writer.add_image(tensorboard_tag(f"explain/{role}"), grid, 0)
    finally:
        writer.close()
    return str(folder)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hydra.errors import HydraException

    from experiments.config import hydra_error_line

    try:
        options = parse_options(args.options)
        if options["data"]:
            raise ConfigError("data", " ".join(options["data"]), "explain reads the run's own data",
                              "drop the data options (use --images DIR for other images)")
        result = explain(args.run_dir, args.images, options["ckpt"], args.cls, args.n, args.out, args.seed,
                         args.steps, args.sanity)
    except ConfigError as err:  # includes CheckpointError: one sentence, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as err:
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        return 2
    print(f"checkpoint: {result['checkpoint']}")
    print(f"Grad-CAM layer: {result['layer']}; Integrated Gradients: {result['steps']} steps from the mean image")
    for image in result["images"]:
        print(f"{image['file']}: " + ", ".join(f"{k}={v}" for k, v in image.items() if k in ("true", "predicted",
                                                                                           "class", "pixels")))
    if "sanity" in result:
        if result["sanity"]["mode"] == "cascade":
            for step in result["sanity"]["steps"]:
                print(f"  re-initialised down to {step['reinitialised']}: Spearman Grad-CAM {_fmt(step['gradcam'])}, "
                      f"Integrated Gradients {_fmt(step['ig'])}")
        final = result["sanity"]["final"]
        print(f"sanity check ({result['sanity']['mode']} re-initialisation): Spearman rank correlation of trained vs "
              f"randomised maps: Grad-CAM {_fmt(final['gradcam'])} ({final['gradcam_constant']} maps constant), "
              f"Integrated Gradients {_fmt(final['ig'])} by magnitude, {_fmt(final['ig_signed'])} signed"
              f" ({final['ig_constant']} constant)")
    print(f"figures: {Path(result['saved']).parent}")
    print(f"tensorboard: {result['tensorboard']}")
    print(f"saved: {result['saved']}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
