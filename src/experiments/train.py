"""``python -m experiments.train [overrides]`` — train one configuration, or a sweep with ``-m``.

``train(cfg)`` reads top to bottom (after lightning-hydra-template's): validate, plan (fresh, continue or
skip), build, fit, test the best checkpoint, record. The :class:`RunRecord` around it owns the run's
status, so whatever stops the run leaves ``metrics.json`` saying why; ``main`` only turns errors into
exit codes. Only Hydra is imported at module level so that ``--help`` and ``--cfg job`` answer in a
second; Lightning is imported when training starts.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import hydra
from omegaconf import DictConfig

from experiments.config import conf_dir
from experiments.errors import ConfigError, RunInterrupted, TrainingDiverged
from experiments.run import resume
from experiments.run.record import RunRecord
from experiments.validation import validate


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; returns the payload written to ``<run_dir>/metrics.json``."""
    with RunRecord.open(cfg) as record:  # status running -> completed | failed | interrupted
        validate(cfg)
        plan = resume.plan(cfg, record.overrides, record.choices)  # fresh start, continue, or skip
        if plan.completed is not None:
            return record.skipped(plan)
        cfg = record.follow(plan)

        import lightning as L

        from experiments import build
        from experiments.run.checkpoints import load_weights
        from experiments.run.history import epoch_metrics

        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build.build_datamodule(cfg)
        task = build.build_task(cfg)
        checkpoint = plan.verify(task)  # weights-only, matching network, full training state; read once
        callbacks = build.build_callbacks(cfg, task)
        trainer = build.build_trainer(cfg, callbacks, build.build_logger(cfg), checkpoint=checkpoint)
        record.begin(trainer, task.network, callbacks)

        trainer.fit(task, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=True)
        metrics = epoch_metrics(trainer.callback_metrics)
        best = trainer.checkpoint_callback.best_model_path
        if best:  # not test(ckpt_path=best): that also rolls callback states (the history) back to the best epoch
            load_weights(task, best)
        metrics.update(epoch_metrics(trainer.test(task, datamodule=datamodule, verbose=False)[0]))
        metrics.update(best_score(trainer, task))
        return record.complete(metrics, best_checkpoint=best, epochs=trainer.current_epoch, **data_stats(datamodule))


def best_score(trainer: Any, task: Any) -> dict[str, float]:
    """``val/best_acc`` (the task's monitor): the best validation value any epoch reached."""
    score = trainer.checkpoint_callback.best_model_score
    split, name = task.monitor.split("/", 1)
    return {} if score is None else {f"{split}/best_{name}": float(score)}


def data_stats(datamodule: Any) -> dict[str, Any]:
    """The training split's per-channel mean/std, so that ``evaluate --predict`` normalises new images the same way."""
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    return {"data_stats": {"mean": list(mean), "std": list(std)}} if mean and std else {}


def _multirun_job() -> str | None:
    """The job number (``"3"``) when this is a job of a ``-m`` sweep, None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().job.num)


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _resume_hint(cfg: DictConfig, job: str | None) -> str:
    """The command that continues what was interrupted (the run, or the whole sweep)."""
    if job is None:
        return f"resume with: python -m experiments.train resume=true hydra.run.dir={cfg.run_dir}"
    from hydra.core.hydra_config import HydraConfig

    return f"resume the sweep with the same -m command plus: resume=true hydra.sweep.dir={HydraConfig.get().sweep.dir}"


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Train one configuration; returns the objective a sweeper (optuna) maximises: the last epoch's
    ``val/acc`` (classification) or ``val/miou`` (segmentation), None when the run failed or diverged."""
    _composed()
    job = _multirun_job()
    try:
        record = train(cfg)
    except RunInterrupted as err:  # SIGINT/SIGTERM ends the whole process, sweep included: 128 + signal number
        if _is_rank_zero():
            print(f"interrupted: {err}\n{_resume_hint(cfg, job)}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except Exception as err:
        expected = isinstance(err, (ConfigError, TrainingDiverged))  # one-sentence messages, no traceback
        if job is None and not expected:
            raise
        message = str(err) if expected else f"{type(err).__name__}: {err}".splitlines()[0]
        if job is None:
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2 if isinstance(err, ConfigError) else 1)  # 1: the run started and diverged
        # In a sweep one bad job must not stop the others: its metrics.json says "failed" (written by
        # train), the sweep's SweepStatus callback exits non-zero at the end, and optuna marks it failed.
        print(f"job {job} failed ({cfg.run_dir}): {message}", file=sys.stderr, flush=True)
        logging.getLogger(__name__).error("job failed", exc_info=True)  # full traceback: <run dir>/train.log
        return None
    metrics = record.get("metrics", {})
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if v is not None and k.startswith(("val/", "test/")))
    skipped = " (already completed; skipped)" if record.get("skipped") else ""  # resume=true on a finished run
    if _is_rank_zero():  # under DDP every process returns here; one summary is enough
        print(f"run dir: {record['run_dir']}{skipped}\n{shown}")
    monitor = "val/miou" if record["task"] == "segmentation" else "val/acc"
    return metrics.get(monitor)


#: HYDRA_FULL_ERROR as the user left it, held while :func:`cli` has Hydra raise composition errors
_user_full_error: list[str | None] = []


def _composed() -> None:
    """The config composed: Hydra's own error handling again for whatever fails from here on."""
    if _user_full_error:
        user = _user_full_error.pop()
        if user is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = user


def cli() -> None:
    """:func:`main`, with a config Hydra cannot compose (``activation=sigmod``, ``experiment=<typo>``) answered like
    any other bad input: ``error: <one line>`` naming the valid options, exit 2, no traceback.

    Hydra would print it over many lines and exit 1; with ``HYDRA_FULL_ERROR=1`` it raises it instead, so that is
    set until :func:`main` starts and then put back. A user's own ``HYDRA_FULL_ERROR=1`` keeps the stack trace.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.config import hydra_error_line

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    _user_full_error.append(os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        if not _user_full_error:  # main had started: not a composition error
            raise
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from experiments.validation import check_overrides

    try:  # a retired key (model.norm=none): Hydra alone would only say it is not in the config
        check_overrides(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    cli()
