"""Checks of what a run starts from: resume and ckpt_path targets, encoder transfer and autoencoder pre-training.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from experiments.options import (
    ENCODER_MODELS,
)
from experiments.run.layout import RunDir
from experiments.validation.models import (
    _check_autoencoder,
    _check_unpool,
)
from experiments.validation.rules import (
    _choice,
    _hydra_mode,
    _listing,
    _positive_int,
    _pretraining,
    _require,
    _strategy,
    model_kind,
    model_option,
)


def _check_resume(cfg: DictConfig) -> None:
    """``resume``/``ckpt_path`` must point at something that exists, and not both at once (see resume.py)."""
    from pathlib import Path

    resume, ckpt = cfg.get("resume", False), cfg.get("ckpt_path")
    _require(isinstance(resume, bool), "resume", resume, "resume is true or false",
             "use resume=true with hydra.run.dir=<run dir> to continue a run")
    if ckpt is not None:
        _require(not resume, "ckpt_path", ckpt, "resume=true already continues the run dir's own last checkpoint",
                 "drop ckpt_path, or drop resume=true to start from this checkpoint in a new run dir")
        path = Path(str(ckpt))
        _require(path.is_file(), "ckpt_path", ckpt, "no such file" if not path.exists() else "it is not a file",
                 "point ckpt_path at a checkpoint such as <run dir>/checkpoints/last.ckpt")
    if not resume or OmegaConf.select(cfg, "run_dir") is None:
        return
    run_dir = Path(str(cfg.run_dir))
    started = RunDir(run_dir).has_started()
    if _hydra_mode(cfg) == "MULTIRUN":  # a job that never ran starts now; the sweep itself must exist
        sweep = run_dir.parent
        earlier = any(p.is_file() for p in sweep.glob("*/metrics.json"))
        _require(earlier, "resume", "true", f"the sweep dir {sweep} holds no earlier job to continue",
                 "set hydra.sweep.dir to the sweep to re-launch")
        return
    _require(started, "resume", "true", f"the run dir {run_dir} holds no earlier run (no config.yaml or "
             "checkpoints/last.ckpt)", "point hydra.run.dir at the run to continue, e.g. python -m experiments.train "
             "resume=true hydra.run.dir=outputs/runs/<date>/<time>")



def _check_transfer(cfg: DictConfig) -> None:
    """``encoder_from``, ``pretrain`` and ``probe`` need the shared encoder; the source run must have a best
    checkpoint (its contents and encoder shape are checked when the network is built, before training); the probe
    needs a label per image."""
    source, pretraining, probe = cfg.get("encoder_from"), _pretraining(cfg), cfg.get("probe", False)
    option = model_option(cfg) or model_kind(cfg).lower()
    has_encoder = option in ENCODER_MODELS
    encoders = _listing([f"model={o}" for o in ENCODER_MODELS], "or")
    _require(isinstance(probe, bool), "probe", probe, "probe is true or false",
             "use probe=true to fit a linear probe of the encoder after training")
    if probe:
        _require(has_encoder, "probe", probe, f"the probe reads the shared encoder, which model={option} does not "
                 "have", f"use {encoders}, or drop probe=true")
        task = OmegaConf.select(cfg, "data.task", default="classification")
        _require(task == "classification", "probe", probe, f"the probe fits one class label per image, and "
                 f"data.task={task} has none", "probe on classification data such as data=shapes, or drop probe=true")
    if pretraining:
        _require(has_encoder, "pretrain", _choice(cfg, "pretrain", "autoencoder"), f"pre-training trains an encoder "
                 f"for this run, and model={option} has none", f"use {encoders}, or pretrain=none")
        _require(source is None, "encoder_from", source, "pretrain=autoencoder already starts the encoder from its "
                 "own pre-training run", "drop encoder_from, or use pretrain=none")
        _positive_int(cfg, "pretrain.epochs")
        trainer = cfg.get("trainer")
        strategy = _strategy(trainer) if isinstance(trainer, DictConfig) else "auto"
        _require(not strategy.startswith("ddp"), "pretrain", _choice(cfg, "pretrain", "autoencoder"),
                 "it trains two runs in one process, and DDP starts its other processes by re-running the command "
                 "line", "pre-train in a run of its own (model=autoencoder) and start from it "
                 "with encoder_from=<its run dir>")
        _check_autoencoder(cfg, "pretrain.model")
        _check_unpool(cfg)
    if source is None:
        return
    _require(has_encoder, "encoder_from", source, f"model={option} has no shared encoder to start from another run's",
             f"use {encoders}")
    run = RunDir(str(source))
    _require(run.root.is_dir(), "encoder_from", source, "no such run directory",
             "point it at a run dir written by python -m experiments.train, e.g. outputs/runs/<date>/<time>")
    _require(run.best_checkpoint.is_file(), "encoder_from", source, "it holds no checkpoints/best.ckpt (the run has "
             "not finished a validated epoch)", "point it at a run that trained at least one epoch")
    _check_parameter_free_parts(cfg, run)


#: groups of encoder parts that may have no weights (relu, max pooling, ...), so a swap leaves every shape alike
_PARAMETER_FREE_PARTS = ("activation", "pooling", "norm")


def _check_parameter_free_parts(cfg: DictConfig, run: RunDir) -> None:
    """The source run's activation, pooling and norm must be this run's: weights learnt under max pooling and ReLU
    would load without complaint into an encoder with average pooling and tanh, and mean something else there."""
    source = run.config_file()
    if source is None:
        return
    theirs = OmegaConf.load(source)
    for group in _PARAMETER_FREE_PARTS:
        there, here = theirs.get(group), cfg.get(group)
        if not isinstance(there, DictConfig) or not isinstance(here, DictConfig):
            continue
        for key in sorted(set(there) | set(here)):
            value, ours = there.get(key), here.get(key)
            _require(value == ours, "encoder_from", run.root, f"its encoder ran with {group}.{key}={value} and this "
                     f"run's has {group}.{key}={ours}, which no weight shape tells apart",
                     f"add {group}={there.get('name')} (and {group}.{key}={value}) to this run, or start from a run "
                     f"trained with this run's {group}")
