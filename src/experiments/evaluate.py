"""``python -m experiments.evaluate RUN_DIR [ckpt=best|last|averaged|PATH] [data=...] [--predict DIR]``

Re-test a finished (or interrupted) run, or apply it to new images, from nothing but its run dir:

* evaluate (default): rebuild data, network and task from the run's config (``<run dir>/config.yaml``,
  the config of its first start; else Hydra's ``.hydra/config.yaml``), load the checkpoint weights-only
  (``checkpoints.py``: a corrupt, truncated or foreign file is one sentence, exit 2), run the test split,
  print the metrics and save them to ``<run dir>/evaluation-<ckpt>.json`` (a classifier's with its per-class
  accuracy and confusion matrix, drawn as ``figures/confusion_matrix-evaluation-<ckpt>.png``);
* evaluate on other data (``data=OPTION`` and/or ``data.KEY=VALUE``): the run's data is replaced by that option
  of the ``data`` group (composed as ``train`` would) or by the run's own data with those keys changed, e.g.
  ``data.test_noise=0.2`` or ``data.test_shift=4``, checked to fit the network (task, classes, channels, image
  size: one sentence otherwise), and the metrics go to ``evaluation-<ckpt>-on-<data>.json``;
* probe (``--probe``): freeze the checkpoint's encoder, fit a linear classifier on its global-average-pooled
  features of the training split with the training labels, and report its accuracy on the test split
  (``run/probe.py``); saved to ``<run dir>/probe.json``, and, for the run's own best checkpoint of a completed run,
  added to its ``metrics.json`` as ``test/probe_acc`` (and ``train/probe_acc``) for the report;
* temperature scaling (``--temperature-scale``, classification): fit one temperature T > 0 dividing the
  checkpoint's logits by minimising the NLL on the validation split (Guo et al., ICML 2017, §4.2), and report the
  test split's accuracy (unchanged: T keeps every argmax), NLL and expected calibration error (15 bins, l1) before
  and after (``tasks/calibration.py``); saved to ``<run dir>/calibration.json`` with the reliability diagram before
  and after as ``figures/reliability-temperature-scaled.png``, and, for the run's own best checkpoint of a completed
  run, ``test/ece_scaled`` added to its ``metrics.json`` for the report;
* predict (``--predict FOLDER``): every PNG/JPEG/BMP in FOLDER is resized to the run's image size and
  standardised with the training split's mean/std (saved in ``metrics.json`` at training time), then
  ``predictions.csv`` gets one row of class probabilities per image, in columns named by the run's classes
  (recorded in ``metrics.json``: no data needed) (classification), or each image
  gets a colour-palette mask PNG plus a row of class pixel fractions (segmentation), in ``--out``
  (default ``<run dir>/predictions``).

Exit status: 0 done; 2 bad input (run dir, checkpoint, folder), with a one-line message and no traceback.
Only argparse/OmegaConf are imported before the arguments are parsed, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.config import hydra_error_line, register_resolvers, upgrade_config
from experiments.errors import ConfigError
from experiments.run.layout import AVERAGED, BEST, LAST, RunDir, write_json

CHECKPOINT_NAMES = (BEST, LAST, AVERAGED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.evaluate",
        description="Re-test a run dir written by python -m experiments.train on its test split (metrics printed "
                    "and saved to <run dir>/evaluation-<ckpt>.json), or predict a folder of images with it.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir, e.g. outputs/runs/<date>/<time>")
    parser.add_argument("options", nargs="*", metavar="ckpt=best|last|averaged|PATH | data=OPTION | data.KEY=VALUE",
                        help="which checkpoint: the run's best (default) or last, or a .ckpt file; data=<option> "
                             "and/or data.<key>=<value> to test on other data (e.g. data.test_noise=0.2)")
    parser.add_argument("--predict", type=Path, metavar="FOLDER", help="predict every image in FOLDER instead")
    parser.add_argument("--probe", action="store_true", help="fit a linear probe on the frozen encoder's pooled "
                        "features (training split) and report its test accuracy instead (probe.json)")
    parser.add_argument("--temperature-scale", action="store_true", help="fit a temperature T on the validation "
                        "split (classification) and report the test NLL and calibration error (ECE) before and after "
                        "instead (calibration.json)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where predictions go (default <run dir>/predictions)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass when predicting")
    return parser


def parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``{"ckpt": "best"|"last"|PATH, "data": [data overrides in the order given]}``."""
    parsed: dict[str, Any] = {"ckpt": "best", "data": []}
    for option in options:
        key, sep, value = option.partition("=")
        if sep and value and (key == "data" or key.startswith("data.")):
            parsed["data"].append(option)
            continue
        if not sep or key != "ckpt" or not value:
            raise ConfigError(key or option, value, "the options are ckpt=best|last|averaged|PATH, data=<option> and "
                              "data.<key>=<value>", "use e.g. ckpt=last or data.test_noise=0.2")
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
        upgrade_config(cfg)  # a run from before a key retired (model.norm) reads as today's
        cfg.run_dir = str(run_dir)
        return cfg
    problem = "no such directory" if not run_dir.is_dir() else "it holds no config.yaml or .hydra/config.yaml"
    raise ConfigError("RUN_DIR", run_dir, problem, "point it at a run dir written by python -m experiments.train, "
                      "e.g. outputs/runs/<date>/<time>")


def resolve_checkpoint(run_dir: str | Path, spec: str) -> Path:
    """``best``/``last``/``averaged`` name files of the run dir, anything else is a path. Without a ``best.ckpt``
    (``save_top_k > 1`` keeps ``best-epoch<N>.ckpt`` files; ema/swa test ``averaged.ckpt``) ``best`` is the
    checkpoint the run itself recorded as its result in metrics.json."""
    run = RunDir(run_dir)
    if spec not in CHECKPOINT_NAMES:
        return Path(spec)
    path = run.checkpoint(spec)
    recorded = (run.read_record() or {}).get("best_checkpoint")
    if spec == BEST and not path.is_file() and recorded:
        return Path(recorded)
    return path


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


def with_data(cfg: DictConfig, overrides: Sequence[str]) -> tuple[DictConfig, str]:
    """(the run's config with other data, a label for it): ``data=<option>`` composes that option of the ``data``
    group with the ``data.<key>=<value>`` overrides (as ``train`` would); without it the overrides change the run's
    own data. Refused in one sentence (:func:`~experiments.validation.check_evaluation_data`) when the network
    cannot take it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from experiments.config import compose
    from experiments.validation import check_evaluation_data

    option = [o for o in overrides if o.partition("=")[0] == "data"]
    keys = [o for o in overrides if o not in option]
    evaluated = copy.deepcopy(cfg)
    if option:  # a fresh data option: its own defaults, then the overrides, resolved where they were composed
        evaluated.data = OmegaConf.to_container(compose([option[-1], *keys]).data, resolve=True)
    else:  # the run's own data, changed in place (so that e.g. num_classes still follows data.kinds)
        for parsed in OverridesParser.create().parse_overrides(list(keys)):
            key = parsed.key_or_group
            if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
                raise ConfigError(key, parsed.value(), "the run's data has no such key",
                                  f"use one of {', '.join(f'data.{k}' for k in cfg.data)}, or data=<option> first")
            OmegaConf.update(evaluated, key, parsed.value(), merge=False)
    check_evaluation_data(cfg, evaluated)
    return evaluated, _label(overrides)


def _label(overrides: Sequence[str]) -> str:
    """``data=mnist data.channels=3`` -> ``mnist,channels=3``, as a file-name part (at most ~80 characters)."""
    text = ",".join(o.removeprefix("data=").removeprefix("data.") for o in overrides)
    text = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text)
    return text if len(text) <= 80 else f"{text[:70]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _task_with_weights(cfg: DictConfig, path: Path) -> Any:
    from experiments import build
    from experiments.run.checkpoints import load_weights

    if OmegaConf.select(cfg, "model.weights"):  # the checkpoint holds every weight: the pretrained file is not read
        cfg.model.weights = None
    task = build.build_task(cfg)
    load_weights(task, path, key="ckpt")
    return task


def load_task(run_dir: str | Path, ckpt: str = "best", accelerator: str = "cpu"
              ) -> tuple[DictConfig, Path, Any]:
    """(the run's config, the checkpoint's path, its task with those weights) for the commands that read a run
    back (probe, temperature scaling, landscape): seeded with the run's seed, on the GPU when ``accelerator`` asks
    for one (``gpu``/``cuda``, or ``auto`` with one present)."""
    import lightning as L
    import torch

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    path = resolve_checkpoint(run_dir, ckpt)
    L.seed_everything(int(cfg.get("seed", 0)), verbose=False)
    task = _task_with_weights(cfg, path)
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        task = task.cuda()
    return cfg, path, task


def is_tested_checkpoint(run_dir: str | Path, path: str | Path) -> bool:
    """Whether ``path`` is the checkpoint the run tested (its record's ``best_checkpoint``): only numbers measured on
    those weights may join the run's metrics.json."""
    best = (RunDir(run_dir).read_record() or {}).get("best_checkpoint")
    return bool(best) and Path(str(best)).resolve() == Path(path).resolve()


def folder_images(key: str, folder: str | Path) -> list[Path]:
    """The PNG/JPEG/BMP files of ``folder`` (``--predict``, ``explain --images``); one sentence naming ``key`` when
    it is not a folder or holds none."""
    from experiments.run.predict import image_files

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(key, folder, "no such directory", f"point {key} at a folder of PNG/JPEG images")
    files = image_files(folder)
    if not files:
        raise ConfigError(key, folder, "it holds no PNG, JPEG or BMP images", f"point {key} at a folder of images")
    return files


def evaluate(run_dir: str | Path, ckpt: str = "best", accelerator: str = "auto", data: Sequence[str] = ()
             ) -> dict[str, Any]:
    """Test the run's checkpoint on its test split, or on the test split of other ``data`` (overrides such as
    ``data.test_noise=0.2``: :func:`with_data`); returns and saves ``evaluation-<ckpt>[-on-<data>].json``."""
    import lightning as L

    from experiments import build
    from experiments.run.history import epoch_metrics

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    path = resolve_checkpoint(run_dir, ckpt)
    label = _checkpoint_label(ckpt, path)
    if data:
        cfg, on = with_data(cfg, data)
        label = f"{label}-on-{on}"
    L.seed_everything(int(cfg.get("seed", 0)), verbose=False)
    task = _task_with_weights(cfg, path)
    task.log_confusion_figure = False  # no loggers here, and the run's own figure stays its training result
    datamodule = build.build_datamodule(cfg)
    tested = _trainer(cfg, accelerator).test(task, datamodule=datamodule, verbose=False)
    result = {
        "run_dir": str(run_dir), "checkpoint": str(path), "split": "test", "data": list(data),
        "metrics": epoch_metrics(tested[0] if tested else {}),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    by_class = task.run_summary() if hasattr(task, "run_summary") else {}
    result.update(by_class)  # per_class, confusion_matrix and class_names, as in metrics.json
    saved = RunDir(run_dir).evaluation(label)
    write_json(saved, result)
    figure = _confusion_figure(run_dir, label, by_class)
    return {**result, "saved": str(saved), **({"figure": str(figure)} if figure else {})}


def _confusion_figure(run_dir: Path, label: str, by_class: dict[str, Any]) -> Path | None:
    """``figures/confusion_matrix-<label>.png`` beside the evaluation's JSON, for a classification run."""
    from experiments.analysis import per_class

    if per_class.CONFUSION not in by_class:
        return None
    figure = per_class.confusion_figure(by_class[per_class.CLASS_NAMES], by_class[per_class.CONFUSION],
                                        title=f"evaluation {label}")
    return per_class.save_figure(figure, per_class.confusion_figure_path(run_dir, f"evaluation-{label}"))


def class_names(cfg: DictConfig, count: int, run_dir: str | Path | None = None) -> list[str]:
    """Column names, without the data: the names the run recorded in its ``metrics.json`` (folder names,
    torchvision's classes, ``data.class_names``, shape kinds), else its config's ``data.class_names`` or shape kinds
    (plus background for segmentation), else ``class_<i>``."""
    from experiments.analysis.per_class import run_class_names

    record = RunDir(run_dir).read_record() if run_dir is not None else None
    data = {key: OmegaConf.select(cfg, f"data.{key}", default=None, throw_on_resolution_failure=False)
            for key in ("class_names", "kinds", "task")}
    return run_class_names(record, data, count)


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

    from experiments.run.predict import load_images, write_masks, write_probabilities

    run_dir, folder = Path(run_dir), Path(folder)
    out = Path(out) if out is not None else run_dir / "predictions"
    cfg = load_run_config(run_dir)
    files = folder_images("--predict", folder)
    task = _task_with_weights(cfg, resolve_checkpoint(run_dir, ckpt)).eval()
    mean, std = _data_stats(cfg, run_dir)
    images, sizes = load_images(files, int(cfg.data.image_size), int(cfg.data.channels), mean, std)
    if hasattr(task, "reconstruct_pixels"):  # an autoencoder: its reconstructions, and how close they come
        from experiments.run.predict import write_reconstructions

        task.set_pixel_stats(mean, std)
        with torch.no_grad():
            recon = torch.cat([task.predict_step(images[i : i + batch_size], 0).float()
                               for i in range(0, len(images), batch_size)])
        return write_reconstructions(out, files, task.to_pixels(images), recon)
    with torch.no_grad():
        probs = torch.cat([task(images[i : i + batch_size]).float().softmax(dim=1)
                           for i in range(0, len(images), batch_size)])
    classes = class_names(cfg, probs.shape[1], run_dir)
    if probs.ndim == 4:  # (N, classes, H, W): segmentation
        return write_masks(out, files, probs.argmax(dim=1), sizes, classes)
    return write_probabilities(out / "predictions.csv", files, probs, classes)


def probe(run_dir: str | Path, ckpt: str = "best", accelerator: str = "auto") -> dict[str, Any]:
    """The linear probe of the checkpoint's encoder on the run's data (``run/probe.py``); saves ``probe.json`` and
    returns its body plus ``saved`` and ``recorded`` (whether the run's metrics.json took the accuracies: only for its
    own best checkpoint, the weights its other metrics describe, and only once the run completed)."""
    from experiments import build
    from experiments.run.probe import probe_network, save_probe
    from experiments.run.record import RunRecord

    run_dir = Path(run_dir)
    cfg, path, task = load_task(run_dir, ckpt, accelerator)
    result = probe_network(task.network, build.build_datamodule(cfg))
    saved = save_probe(run_dir, result, path)
    recorded = is_tested_checkpoint(run_dir, path) and RunRecord.add_metrics(run_dir, result["metrics"])
    return {**result, "checkpoint": str(path), "saved": str(saved), "recorded": recorded}


def temperature_scale(run_dir: str | Path, ckpt: str = "best", accelerator: str = "auto") -> dict[str, Any]:
    """Temperature-scale the checkpoint (``tasks/calibration.py``): T fitted on the run's validation split, the test
    split's accuracy, NLL and ECE before and after; saves ``calibration.json`` and the reliability figure, and returns
    the body plus ``checkpoint``, ``saved``, ``figure`` and ``recorded`` (whether ``test/ece_scaled`` joined the run's
    metrics.json: as for the probe, only for its own best checkpoint once the run completed)."""
    import lightning as L
    import torch

    from experiments import build
    from experiments.analysis.per_class import save_figure
    from experiments.run.record import RunRecord
    from experiments.specs import run_task
    from experiments.tasks.calibration import (
        ReliabilityBins,
        collect_logits,
        reliability_figure,
        reliability_figure_path,
        temperature_report,
    )

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    task_kind = run_task(cfg)
    if task_kind != "classification":
        raise ConfigError("RUN_DIR", run_dir, f"temperature scaling calibrates one class probability per image, and "
                          f"this run's task is {task_kind}", "use --temperature-scale on a classification run")
    path = resolve_checkpoint(run_dir, ckpt)
    L.seed_everything(int(cfg.get("seed", 0)), verbose=False)
    task = _task_with_weights(cfg, path)
    device = torch.device("cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and
                                                                       torch.cuda.is_available()) else "cpu")
    network = task.network.to(device)
    datamodule = build.build_datamodule(cfg)
    for stage in ("fit", "test"):
        datamodule.setup(stage)
    val_logits, val_y = collect_logits(network, datamodule.val_dataloader(), device)
    test_logits, test_y = collect_logits(network, datamodule.test_dataloader(), device)
    report = temperature_report(val_logits, val_y, test_logits, test_y)
    body = {"run_dir": str(run_dir), "checkpoint": str(path), **report,
            "calibrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    saved = RunDir(run_dir).calibration
    write_json(saved, body)
    before, after = (ReliabilityBins(**report["reliability"][k]) for k in ("before", "after"))
    title = f"test split, T = {report['temperature']:.2f} fitted on validation"
    figure = save_figure(reliability_figure(before, report["test"]["before"]["ece"], title, after=after,
                                            after_ece=report["test"]["after"]["ece"]),
                         reliability_figure_path(run_dir, "temperature-scaled"))
    recorded = is_tested_checkpoint(run_dir, path) and RunRecord.add_metrics(
        run_dir, {"test/ece_scaled": report["test"]["after"]["ece"]})
    return {**body, "saved": str(saved), "figure": str(figure), "recorded": recorded}


def print_calibration(result: dict[str, Any]) -> None:
    """calibration.json's headline as a user reads it: T, then accuracy, NLL and ECE before and after."""
    before, after = result["test"]["before"], result["test"]["after"]
    print(f"checkpoint: {result['checkpoint']}")
    print(f"temperature: T={result['temperature']:.4f} (fitted on {result['val_images']} validation images: "
          f"NLL {result['val']['nll_before']:.4f} -> {result['val']['nll_after']:.4f})")
    print(f"test ({result['test_images']} images)   before    after")
    for key in ("acc", "nll", "ece"):
        print(f"  test/{key:<14} {before[key]:8.4f} {after[key]:8.4f}")
    print(f"ECE: {result['ece']}")
    print(f"reliability diagram: {result['figure']}")
    print(f"saved: {result['saved']}" + (" (and test/ece_scaled in metrics.json)" if result["recorded"] else ""))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hydra.errors import HydraException

    try:
        options = parse_options(args.options)
        ckpt = options["ckpt"]
        if args.predict is not None:
            table = predict(args.run_dir, args.predict, args.out, ckpt=ckpt, batch_size=args.batch_size)
            print(f"predictions: {table}")
            return 0
        if args.probe:
            if options["data"]:
                raise ConfigError("--probe", " ".join(options["data"]), "the probe fits and scores on the run's own "
                                  "training and test splits", "drop the data options")
            probed = probe(args.run_dir, ckpt=ckpt, accelerator=args.accelerator)
            print(f"checkpoint: {probed['checkpoint']}")
            print(" ".join(f"{key}={value:.4f}" for key, value in probed["metrics"].items()))
            print(f"saved: {probed['saved']}" + (" (and metrics.json)" if probed["recorded"] else ""))
            return 0
        if args.temperature_scale:
            if options["data"]:
                raise ConfigError("--temperature-scale", " ".join(options["data"]), "the temperature is fitted "
                                  "on the run's own validation split and scored on its test split",
                                  "drop the data options")
            print_calibration(temperature_scale(args.run_dir, ckpt=ckpt, accelerator=args.accelerator))
            return 0
        result = evaluate(args.run_dir, ckpt=ckpt, accelerator=args.accelerator, data=options["data"])
    except ConfigError as err:  # includes CheckpointError: one sentence, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as err:  # data=<no such option>, or a key it does not have
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        return 2
    print(f"checkpoint: {result['checkpoint']}")
    if result["data"]:
        print(f"data: {' '.join(result['data'])}")
    for key, value in result["metrics"].items():
        print(f"{key}={value:.4f}" if value is not None else f"{key}=nan")
    print(f"saved: {result['saved']}")
    if "figure" in result:
        print(f"confusion matrix: {result['figure']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
