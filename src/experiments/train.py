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
        from experiments.speed.settings import SpeedSettings

        if cfg.get("print_config", True) and _is_rank_zero() and _multirun_job() is None:
            from experiments.config_tree import print_config_tree  # one tree per run: not per DDP rank or sweep job

            print_config_tree(cfg)
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        speed = SpeedSettings.from_config(cfg)  # torch threads and a packed job's GPU memory share, before any work
        speed.apply(str(cfg.trainer.get("accelerator", "auto")))
        encoder_source = encoder_start(cfg, plan.resuming)  # pretrain=autoencoder trains its run here, first
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build.build_datamodule(cfg)
        task = build.build_task(cfg)
        transferred = {}
        if encoder_source is not None and not plan.resuming:  # a resumed run's checkpoint holds the encoder already
            from experiments.run.transfer import start_encoder

            transferred = start_encoder(task.network, encoder_source)
        checkpoint = plan.verify(task)  # weights-only, matching network, full training state; read once
        callbacks = build.build_callbacks(cfg, task)
        trainer = build.build_trainer(cfg, callbacks, build.build_logger(cfg), checkpoint=checkpoint)
        record.begin(trainer, task.network, callbacks)

        trainer.fit(task, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=True)
        metrics = epoch_metrics(trainer.callback_metrics)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        averaged = weight_averaging(callbacks)
        if averaged:  # ema/swa: the final averaged weights (in the task after fit) are tested, and saved for evaluate
            best = str(record.dir.averaged_checkpoint)
            trainer.save_checkpoint(best, weights_only=True)  # an end result to evaluate, not to resume from
        elif best:  # not test(ckpt_path=best): that also rolls callback states (the history) back to the best epoch
            load_weights(task, best)
        metrics.update(epoch_metrics(trainer.test(task, datamodule=datamodule, verbose=False)[0]))
        metrics.update(best_score(trainer, task))
        if cfg.get("probe"):  # the tested weights' encoder, read out by a linear classifier: test/probe_acc
            metrics.update(linear_probe(task, datamodule, record.dir.root, best))
        return record.complete(metrics, best_checkpoint=best, averaged=averaged, epochs=trainer.current_epoch,
                               **data_stats(datamodule), **transferred)


def encoder_start(cfg: DictConfig, resuming: bool) -> str | None:
    """The run dir whose encoder this run starts from: ``encoder_from``, or with ``pretrain=autoencoder`` the
    pre-training run in ``<run dir>/pretrain``, trained here first (a run of its own, with its own record) unless
    this run resumes from its own checkpoint. None: the encoder starts from the init group."""
    from experiments.run.pretrain import pretraining_config, wants_pretraining

    if not wants_pretraining(cfg):
        source = cfg.get("encoder_from")
        return str(source) if source is not None else None
    pretraining = pretraining_config(cfg)
    if not resuming:
        if _is_rank_zero():  # this run's config first: resume=true after a stop in pre-training continues *this* run
            resume.snapshot(cfg, cfg.run_dir)
        train(pretraining)
    return str(pretraining.run_dir)


def linear_probe(task: Any, datamodule: Any, run_dir: Any, checkpoint: str | None) -> dict[str, float]:
    """``probe=true``: fit the linear probe on the encoder's pooled training features (``run/probe.py``), write
    ``probe.json``, and return ``train/probe_acc`` and ``test/probe_acc`` for the run's metrics."""
    from experiments.run.probe import probe_network, save_probe

    probed = probe_network(task.network, datamodule)
    if _is_rank_zero():
        save_probe(run_dir, probed, checkpoint or None)
    return probed["metrics"]


def weight_averaging(callbacks: list) -> str | None:
    """``ema`` or ``swa`` when a weight-averaging callback (Lightning's) is on: its final averaged weights are the
    run's result, whatever epoch the best checkpoint came from; None otherwise."""
    from lightning.pytorch.callbacks import EMAWeightAveraging, StochasticWeightAveraging, WeightAveraging

    for callback in callbacks:
        if isinstance(callback, EMAWeightAveraging):
            return "ema"
        if isinstance(callback, (StochasticWeightAveraging, WeightAveraging)):  # WeightAveraging's default: equal
            return "swa"
    return None


def best_score(trainer: Any, task: Any) -> dict[str, float]:
    """``val/best_acc`` (the checkpoint's monitor, by default the task's): the best value any epoch reached."""
    checkpointer = trainer.checkpoint_callback
    score = checkpointer.best_model_score if checkpointer else None
    split, name = (getattr(checkpointer, "monitor", None) or task.monitor).split("/", 1)
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
    ``val/acc`` (classification), ``val/miou`` (segmentation) or ``val/psnr`` (reconstruction), None when the run
    failed or diverged."""
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
    from experiments.options import MONITORS

    return metrics.get(MONITORS.get(record["task"], "val/acc"))


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
