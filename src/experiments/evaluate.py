"""``python -m experiments.evaluate RUN_DIR [ckpt=best|last|PATH] [--predict FOLDER] [--out DIR]``

Re-test a finished (or interrupted) run, or apply it to new images, from nothing but its run dir:

* evaluate (default): rebuild data, network and task from the run's config (``<run dir>/config.yaml``,
  the config of its first start; else Hydra's ``.hydra/config.yaml``), load the checkpoint weights-only
  (``checkpoints.py``: a corrupt, truncated or foreign file is one sentence, exit 2), run the test split,
  print the metrics and save them to ``<run dir>/evaluation-<ckpt>.json``;
* predict (``--predict FOLDER``): every PNG/JPEG/BMP in FOLDER is resized to the run's image size and
  standardised with the training split's mean/std (saved in ``metrics.json`` at training time), then
  ``predictions.csv`` gets one row of class probabilities per image (classification), or each image
  gets a colour-palette mask PNG plus a row of class pixel fractions (segmentation), in ``--out``
  (default ``<run dir>/predictions``).

Exit status: 0 done; 2 bad input (run dir, checkpoint, folder), with a one-line message and no traceback.
Only argparse/OmegaConf are imported before the arguments are parsed, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.config import register_resolvers
from experiments.errors import ConfigError
from experiments.run.layout import BEST, LAST, RunDir, write_json

CHECKPOINT_NAMES = (BEST, LAST)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.evaluate",
        description="Re-test a run dir written by python -m experiments.train on its test split (metrics printed "
                    "and saved to <run dir>/evaluation-<ckpt>.json), or predict a folder of images with it.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir, e.g. outputs/runs/<date>/<time>")
    parser.add_argument("options", nargs="*", metavar="ckpt=best|last|PATH",
                        help="which checkpoint: the run's best (default) or last, or a .ckpt file")
    parser.add_argument("--predict", type=Path, metavar="FOLDER", help="predict every image in FOLDER instead")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where predictions go (default <run dir>/predictions)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass when predicting")
    return parser


def parse_options(options: Sequence[str]) -> dict[str, str]:
    parsed = {"ckpt": "best"}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in parsed or not value:
            raise ConfigError(key or option, value, "the only option is ckpt=best|last|PATH",
                              "use e.g. ckpt=last or ckpt=outputs/runs/<date>/<time>/checkpoints/best.ckpt")
        parsed[key] = value
    return parsed


def load_run_config(run_dir: str | Path) -> DictConfig:
    """The run's composed config with ``run_dir`` pointing at where the run is now (it may have been moved)."""
    run_dir = Path(run_dir)
    source = RunDir(run_dir).config_file()
    if source is not None:
        register_resolvers()
        cfg = OmegaConf.load(source)
        assert isinstance(cfg, DictConfig)
        OmegaConf.set_struct(cfg, False)
        cfg.run_dir = str(run_dir)
        return cfg
    problem = "no such directory" if not run_dir.is_dir() else "it holds no config.yaml or .hydra/config.yaml"
    raise ConfigError("RUN_DIR", run_dir, problem, "point it at a run dir written by python -m experiments.train, "
                      "e.g. outputs/runs/<date>/<time>")


def resolve_checkpoint(run_dir: str | Path, spec: str) -> Path:
    return RunDir(run_dir).checkpoint(spec) if spec in CHECKPOINT_NAMES else Path(spec)


def _checkpoint_label(spec: str, path: Path) -> str:
    return spec if spec in CHECKPOINT_NAMES else path.stem


def _trainer(cfg: DictConfig, accelerator: str) -> Any:
    import lightning as L
    import torch

    precision = str(cfg.trainer.get("precision", "32-true")) if "trainer" in cfg else "32-true"
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and precision in ("16-mixed", "16", "16-true"):
        precision = "32-true"  # fp16 is GPU-only in Lightning; float32 on CPU is the faithful choice
    return L.Trainer(accelerator=accelerator, devices=1, precision=precision, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)


def _task_with_weights(cfg: DictConfig, path: Path) -> Any:
    from experiments import build
    from experiments.run.checkpoints import load_weights

    task = build.build_task(cfg)
    load_weights(task, path, key="ckpt")
    return task


def evaluate(run_dir: str | Path, ckpt: str = "best", accelerator: str = "auto") -> dict[str, Any]:
    """Test the run's checkpoint on its test split; returns and saves ``evaluation-<ckpt>.json``."""
    import lightning as L

    from experiments import build
    from experiments.run.history import epoch_metrics

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    path = resolve_checkpoint(run_dir, ckpt)
    L.seed_everything(int(cfg.get("seed", 0)), verbose=False)
    task = _task_with_weights(cfg, path)
    datamodule = build.build_datamodule(cfg)
    tested = _trainer(cfg, accelerator).test(task, datamodule=datamodule, verbose=False)
    result = {
        "run_dir": str(run_dir), "checkpoint": str(path), "split": "test",
        "metrics": epoch_metrics(tested[0] if tested else {}),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(RunDir(run_dir).evaluation(_checkpoint_label(ckpt, path)), result)
    return result


def class_names(cfg: DictConfig, count: int) -> list[str]:
    """Column names: the shape kinds (plus background for segmentation) when they fit, else class_<i>."""
    kinds = [str(k) for k in (OmegaConf.select(cfg, "data.kinds") or [])]
    if OmegaConf.select(cfg, "data.task") == "segmentation":
        kinds = ["background", *kinds]
    return kinds if len(kinds) == count else [f"class_{i}" for i in range(count)]


def _data_stats(cfg: DictConfig, run_dir: Path) -> tuple[list[float], list[float]]:
    """The training split's mean/std: recorded in metrics.json since training, else recomputed from the data."""
    stats = (RunDir(run_dir).read_record() or {}).get("data_stats") or {}
    if stats.get("mean") and stats.get("std"):
        return list(stats["mean"]), list(stats["std"])
    from experiments import build

    datamodule = build.build_datamodule(cfg)
    datamodule.setup("fit")
    return list(datamodule.mean), list(datamodule.std)


def predict(
    run_dir: str | Path, folder: str | Path, out: str | Path | None = None, ckpt: str = "best", batch_size: int = 256,
) -> Path:
    """Predict every image in ``folder``; returns the path of the ``predictions.csv`` written in ``out``."""
    import torch

    from experiments.run.predict import image_files, load_images, write_masks, write_probabilities

    run_dir, folder = Path(run_dir), Path(folder)
    out = Path(out) if out is not None else run_dir / "predictions"
    cfg = load_run_config(run_dir)
    if not folder.is_dir():
        raise ConfigError("--predict", folder, "no such directory", "point --predict at a folder of PNG/JPEG images")
    files = image_files(folder)
    if not files:
        raise ConfigError("--predict", folder, "it holds no PNG, JPEG or BMP images",
                          "point --predict at a folder of images")
    task = _task_with_weights(cfg, resolve_checkpoint(run_dir, ckpt)).eval()
    mean, std = _data_stats(cfg, run_dir)
    images, sizes = load_images(files, int(cfg.data.image_size), int(cfg.data.channels), mean, std)
    with torch.no_grad():
        probs = torch.cat([task(images[i : i + batch_size]).float().softmax(dim=1)
                           for i in range(0, len(images), batch_size)])
    classes = class_names(cfg, probs.shape[1])
    if probs.ndim == 4:  # (N, classes, H, W): segmentation
        return write_masks(out, files, probs.argmax(dim=1), sizes, classes)
    return write_probabilities(out / "predictions.csv", files, probs, classes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ckpt = parse_options(args.options)["ckpt"]
        if args.predict is not None:
            table = predict(args.run_dir, args.predict, args.out, ckpt=ckpt, batch_size=args.batch_size)
            print(f"predictions: {table}")
            return 0
        result = evaluate(args.run_dir, ckpt=ckpt, accelerator=args.accelerator)
    except ConfigError as err:  # includes CheckpointError: one sentence, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"checkpoint: {result['checkpoint']}")
    for key, value in result["metrics"].items():
        print(f"{key}={value:.4f}" if value is not None else f"{key}=nan")
    print(f"saved: {Path(result['run_dir']) / ('evaluation-' + _checkpoint_label(ckpt, Path(result['checkpoint'])))}"
          ".json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
