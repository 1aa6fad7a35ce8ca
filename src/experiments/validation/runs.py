"""Rules of the run's own top-level keys (group ``run``: seed, tags, print_config) and of what a run starts from
(group ``start``: resume and ckpt_path targets, encoder transfer, autoencoder pre-training, the linear probe).
"""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.run.layout import RunDir
from experiments.specs import ENCODER_MODELS, model_kind, model_option
from experiments.validation.checks import (
    chosen_option,
    hydra_mode,
    is_pretraining,
    listing,
    positive_int,
    require,
    strategy_name,
)
from experiments.validation.model import _check_autoencoder, _check_unpool
from experiments.validation.registry import rule


@rule("run")
def _check_seed(cfg: DictConfig) -> None:
    """The seed fixes model init and batch order: a whole number >= 0."""
    positive_int(cfg, "seed", 0)


@rule("run")
def _check_tags(cfg: DictConfig) -> None:
    tags = cfg.get("tags")
    if tags is None or isinstance(tags, str):
        return
    ok = isinstance(tags, ListConfig) and all(isinstance(t, (str, int)) and str(t).strip() for t in tags)
    require(ok, "tags", tags, "tags are a list of names", "use e.g. tags=[baseline,lr-study], or tags=[] for none")


@rule("run")
def _check_print_config(cfg: DictConfig) -> None:
    setting = cfg.get("print_config", True)
    if isinstance(setting, bool) or setting in ("compact", "full"):
        return
    groups = [str(k) for k in cfg if isinstance(cfg._get_node(k), DictConfig) and k != "hydra"]
    ok = isinstance(setting, ListConfig) and all(str(g) in groups for g in setting)
    require(ok, "print_config", setting, "it is compact, full (or true), false, or a list of the groups to expand "
            f"({', '.join(groups)})", "use e.g. print_config=full, print_config=[model,optimizer] or "
            "print_config=false")


@rule("start")
def _check_resume(cfg: DictConfig) -> None:
    """``resume``/``ckpt_path`` must point at something that exists, and not both at once (see resume.py)."""
    from pathlib import Path

    resume, ckpt = cfg.get("resume", False), cfg.get("ckpt_path")
    require(isinstance(resume, bool), "resume", resume, "resume is true or false",
            "use resume=true with hydra.run.dir=<run dir> to continue a run")
    if ckpt is not None:
        require(not resume, "ckpt_path", ckpt, "resume=true already continues the run dir's own last checkpoint",
                "drop ckpt_path, or drop resume=true to start from this checkpoint in a new run dir")
        path = Path(str(ckpt))
        folder = path if path.is_dir() else path.parent
        here = sorted(str(p) for p in folder.glob("*.ckpt") if p.is_file()) if folder.is_dir() else []
        require(path.is_file(), "ckpt_path", ckpt, "no such file" if not path.exists() else "it is not a file",
                f"point ckpt_path at {' or '.join(here[:3])}" if here else  # only files that exist are named
                "point ckpt_path at a checkpoint such as <run dir>/checkpoints/last.ckpt")
    if not resume or OmegaConf.select(cfg, "run_dir") is None:
        return
    run_dir = Path(str(cfg.run_dir))
    started = RunDir(run_dir).has_started()
    if hydra_mode(cfg) == "MULTIRUN":  # a job that never ran starts now; the sweep itself must exist
        sweep = run_dir.parent
        earlier = any(p.is_file() for p in sweep.glob("*/metrics.json"))
        require(earlier, "resume", "true", f"the sweep dir {sweep} holds no earlier job to continue",
                "set hydra.sweep.dir to the sweep to re-launch")
        return
    require(started, "resume", "true", f"the run dir {run_dir} holds no earlier run (no config.yaml or "
            "checkpoints/last.ckpt)", "point hydra.run.dir at the run to continue, e.g. python -m experiments.train "
            "resume=true hydra.run.dir=outputs/runs/<date>/<time>")


@rule("start")
def _check_transfer(cfg: DictConfig) -> None:
    """``encoder_from``, ``pretrain`` and ``probe`` need the shared encoder; the source run must have a best
    checkpoint (its contents and encoder shape are checked when the network is built, before training); the probe
    needs a label per image."""
    source, pretraining, probe = cfg.get("encoder_from"), is_pretraining(cfg), cfg.get("probe", False)
    option = model_option(cfg) or model_kind(cfg).lower()
    has_encoder = option in ENCODER_MODELS
    encoders = listing([f"model={o}" for o in ENCODER_MODELS], "or")
    require(isinstance(probe, bool), "probe", probe, "probe is true or false",
            "use probe=true to fit a linear probe of the encoder after training")
    if probe:
        require(has_encoder, "probe", probe, f"the probe reads the shared encoder, which model={option} does not "
                "have", f"use {encoders}, or drop probe=true")
        task = OmegaConf.select(cfg, "data.task", default="classification")
        require(task == "classification", "probe", probe, f"the probe fits one class label per image, and "
                f"data.task={task} has none", "probe on classification data such as data=shapes, or drop probe=true")
    if pretraining:
        require(has_encoder, "pretrain", chosen_option(cfg, "pretrain", "autoencoder"), "pre-training trains an "
                f"encoder for this run, and model={option} has none", f"use {encoders}, or pretrain=none")
        require(source is None, "encoder_from", source, "pretrain=autoencoder already starts the encoder from its "
                "own pre-training run", "drop encoder_from, or use pretrain=none")
        positive_int(cfg, "pretrain.epochs")
        trainer = cfg.get("trainer")
        strategy = strategy_name(trainer) if isinstance(trainer, DictConfig) else "auto"
        require(not strategy.startswith("ddp"), "pretrain", chosen_option(cfg, "pretrain", "autoencoder"),
                "it trains two runs in one process, and DDP starts its other processes by re-running the command "
                "line", "pre-train in a run of its own (model=autoencoder) and start from it "
                "with encoder_from=<its run dir>")
        _check_autoencoder(cfg, "pretrain.model")
        _check_unpool(cfg)
    if source is None:
        return
    require(has_encoder, "encoder_from", source, f"model={option} has no shared encoder to start from another run's",
            f"use {encoders}")
    run = RunDir(str(source))
    require(run.root.is_dir(), "encoder_from", source, "no such run directory",
            "point it at a run dir written by python -m experiments.train, e.g. outputs/runs/<date>/<time>")
    require(run.best_checkpoint.is_file(), "encoder_from", source, "it holds no checkpoints/best.ckpt (the run has "
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
            require(value == ours, "encoder_from", run.root, f"its encoder ran with {group}.{key}={value} and this "
                    f"run's has {group}.{key}={ours}, which no weight shape tells apart",
                    f"add {group}={there.get('name')} (and {group}.{key}={value}) to this run, or start from a run "
                    f"trained with this run's {group}")
