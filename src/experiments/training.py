"""``train(cfg)``: validate, instantiate in order, fit, test on the best checkpoint, write the run dir.

Readable top to bottom on purpose (after lightning-hydra-template's ``train``): every step a user
might want to change is one call here.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.run_files import write_json
from experiments.validation import ConfigError, validate

log = logging.getLogger(__name__)

#: groups whose choice is recorded with every run (HParams columns, report grouping)
RECORDED_GROUPS = (
    "model", "activation", "pooling", "upsampling", "init", "loss", "optimizer", "scheduler", "data", "trainer",
    "diagnostics", "experiment",
)


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """Which option of each config group this run uses (from Hydra's runtime record)."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("hydra") is not None:
        choices = cfg.hydra.runtime.choices
    elif HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    else:
        choices = {}
    return {g: str(choices[g]) for g in RECORDED_GROUPS if choices.get(g) is not None}


def task_overrides(cfg: DictConfig) -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("hydra") is not None:
        return list(cfg.hydra.overrides.task)
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return []


def hyperparameters(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> dict[str, Any]:
    """The fixed key set logged to TensorBoard's HParams tab: group choices, seed, a few scalars, and every
    overridden key, so that the columns line up across a sweep whose jobs share their override keys."""
    hp: dict[str, Any] = {g: choices.get(g, "") for g in RECORDED_GROUPS}
    hp.update(
        seed=cfg.seed,
        lr=OmegaConf.select(cfg, "optimizer.lr"),
        batch_size=OmegaConf.select(cfg, "data.batch_size"),
        max_epochs=OmegaConf.select(cfg, "trainer.max_epochs"),
    )
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key not in hp and not key.startswith("hydra"):
            value = OmegaConf.select(cfg, key, default=None)
            hp[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return {k: ("" if v is None else v) for k, v in hp.items()}


def log_hparams(logger: Any, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """HParams with their final metrics where the logger supports the pairing (TensorBoard), else side by side."""
    if "metrics" in inspect.signature(logger.log_hyperparams).parameters:
        logger.log_hyperparams(hparams, metrics=metrics)
    else:
        logger.log_hyperparams(hparams)
        logger.log_metrics(metrics)
    logger.save()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; returns the payload written to ``<run_dir>/metrics.json``.

    Whatever stops a run (a config mistake, a crash while building or fitting) leaves a "failed" record
    with the one-line reason before the error propagates, so a sweep's report can list every job."""
    from experiments import resume

    run_dir = Path(cfg.run_dir)
    started = time.perf_counter()
    choices, overrides = group_choices(cfg), resume.recordable(task_overrides(cfg))
    record: dict[str, Any] = {
        "status": "running", "error": None, "task": cfg.data.task, "choices": choices, "overrides": overrides,
        "seed": cfg.seed, "run_dir": str(run_dir),
    }
    try:
        validate(cfg)
        plan = resume.plan(cfg, overrides, choices)  # fresh start, continue from a checkpoint, or skip
    except ConfigError as err:
        record.update(status="failed", error=str(err), wall_time_s=0.0)
        if not (cfg.get("resume") and (run_dir / "metrics.json").exists()):  # never clobber the run being resumed
            write_json(run_dir / "metrics.json", record)
        raise
    if plan.completed is not None:
        log.info("%s already completed; skipped (resume=true)", run_dir)
        resume.restore_hydra_record(run_dir, plan.completed.get("overrides") or [])
        return {**plan.completed, "skipped": True}
    cfg, choices, overrides = plan.cfg, plan.choices, plan.overrides
    record.update(task=cfg.data.task, choices=choices, overrides=overrides, seed=cfg.seed)
    earlier_wall_time = 0.0
    if plan.resuming:
        record.update(resumed_from=str(plan.checkpoint), resumes=int(plan.previous.get("resumes", 0)) + 1)
        earlier_wall_time = float(plan.previous.get("wall_time_s") or 0.0)

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from experiments import instantiate as build
    from experiments.checkpoints import SafeCheckpointIO, verify_resumable
    from experiments.resume_state import ResumeState
    from experiments.signals import GracefulStop, RunInterrupted

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    callbacks: list = []
    trainer = None
    try:
        datamodule = build.build_datamodule(cfg)
        task = build.build_task(cfg)
        if plan.checkpoint is not None:  # weights-only, matching network, full training state; before any write
            verify_resumable(plan.checkpoint, task)
        logger = build.build_logger(cfg)
        callbacks = build.build_callbacks(cfg, task, run_dir)
        # last.ckpt after every epoch (Lightning 2.6's save_last only writes it when the best one improves),
        # then exact mid-epoch resume and SIGINT/SIGTERM handling (ResumeState first: a stop checkpoint includes it)
        callbacks += [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                      enable_version_counter=False),
                      ResumeState(), GracefulStop(run_dir / "checkpoints" / "last.ckpt")]
        trainer = build.build_trainer(cfg, callbacks, logger, plugins=[SafeCheckpointIO()])
        record.update(params=sum(p.numel() for p in task.network.parameters()), world_size=trainer.world_size)
        if trainer.is_global_zero:
            resume.snapshot(cfg, run_dir)
            if plan.resuming:
                resume.restore_hydra_record(run_dir, overrides)
            write_json(run_dir / "metrics.json", record)
        final, best = fit_and_test(trainer, task, datamodule, ckpt_path=plan.checkpoint)
    except RunInterrupted as err:  # SIGINT/SIGTERM: checkpoint written at a batch end; resume=true continues
        record.update(status="interrupted", error=str(err), checkpoint=str(err.checkpoint or "") or None,
                      wall_time_s=round(earlier_wall_time + time.perf_counter() - started, 2))
        record.update(run_summaries(callbacks))
        if trainer is None or trainer.is_global_zero:
            write_json(run_dir / "metrics.json", record)
        raise
    except (KeyboardInterrupt, SystemExit) as err:  # a second signal, or Lightning's own SIGTERM exit
        record.update(status="interrupted", error=f"aborted ({type(err).__name__}) without a new checkpoint",
                      wall_time_s=round(earlier_wall_time + time.perf_counter() - started, 2))
        if trainer is not None and trainer.is_global_zero:
            write_json(run_dir / "metrics.json", record)
        raise
    except Exception as err:  # the run dir must say why it stopped; the caller decides what to do next
        record.update(status="failed", error=f"{type(err).__name__}: {err}".splitlines()[0],
                      wall_time_s=round(earlier_wall_time + time.perf_counter() - started, 2))
        record.update(run_summaries(callbacks))
        # a resume that fails before training (e.g. a bad checkpoint) leaves the earlier run's record alone
        if (trainer is None and not plan.previous) or (trainer is not None and trainer.is_global_zero):
            write_json(run_dir / "metrics.json", record)
        raise

    record.update(
        status="completed",
        metrics=final,
        wall_time_s=round(earlier_wall_time + time.perf_counter() - started, 2),
        best_checkpoint=best,
        epochs=trainer.current_epoch,
        **data_stats(datamodule),
    )
    record.update(run_summaries(callbacks))
    if trainer.is_global_zero:
        if logger:
            # None (a diverged value) is logged as NaN so every run of a sweep has the same metric columns
            hp_metrics = {f"final/{k}": (float("nan") if v is None else v) for k, v in final.items()}
            log_hparams(logger, hyperparameters(cfg, choices, overrides), hp_metrics)
        write_json(run_dir / "metrics.json", record)
    return record


def fit_and_test(
    trainer: Any, task: Any, datamodule: Any, ckpt_path: str | Path | None = None,
) -> tuple[dict[str, float | None], str]:
    """Fit (continuing from ``ckpt_path`` when given), then test the best checkpoint; returns the final metrics
    and the best checkpoint's path. Checkpoints load weights-only (see checkpoints.py)."""
    from experiments.checkpoints import load_weights
    from experiments.outputs import epoch_metrics

    trainer.fit(task, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    final = epoch_metrics(trainer.callback_metrics)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if best:  # not test(ckpt_path=best): that also rolls callback states (the history) back to the best epoch
        load_weights(task, best)
    tested = trainer.test(task, datamodule=datamodule, verbose=False)
    final.update(epoch_metrics(tested[0] if tested else {}))
    if checkpoint is not None and checkpoint.best_model_score is not None:
        split, name = task.monitor.split("/", 1)
        final[f"{split}/best_{name}"] = float(checkpoint.best_model_score)
    return final, best


def data_stats(datamodule: Any) -> dict[str, Any]:
    """The training split's per-channel mean/std, so that ``evaluate --predict`` normalises new images the same way."""
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    return {"data_stats": {"mean": list(mean), "std": list(std)}} if mean and std else {}


def run_summaries(callbacks: list) -> dict[str, Any]:
    """What callbacks contribute to ``metrics.json``: every ``run_summary()`` dict (history, diagnostics...)."""
    merged: dict[str, Any] = {}
    for callback in callbacks:
        if hasattr(callback, "run_summary"):
            merged.update(callback.run_summary())
    return merged
