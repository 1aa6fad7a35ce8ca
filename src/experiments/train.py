"""``python -m experiments.train [overrides]`` — train one configuration, or a sweep with ``-m``.

``train(cfg)`` reads top to bottom in phases around one :class:`Run` (after lightning-hydra-template's train):
upgrade the config (:func:`~experiments.config.upgrade_config`), validate and plan (fresh, continue or skip),
prepare the process (console, speed settings: built once), pre-train (``pretrain=autoencoder``: the autoencoder's
run of its own, first), build, fit, test the best checkpoint, record. The :class:`RunRecord` around it owns the
run's status, so whatever stops the run leaves ``metrics.json`` saying why; ``main`` only turns errors into exit
codes. Only Hydra is imported at module level so that ``--help`` and ``--cfg job`` answer in a second; Lightning is
imported when training starts.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import hydra
from omegaconf import DictConfig

from experiments.config import conf_dir, upgrade_config
from experiments.errors import ConfigError, RunInterrupted, RunPruned, TrainingDiverged
from experiments.run import resume
from experiments.run.record import RunRecord
from experiments.validation import validate


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; returns the payload written to ``<run_dir>/metrics.json``."""
    with RunRecord.open(cfg) as record:  # status running -> completed | failed | interrupted | pruned
        run = Run.plan(upgrade_config(cfg), record)  # validated; a fresh start, a continuation, or nothing to do
        if run.finished:
            return record.skipped(run.resume_plan)
        run.prepare()
        run.pretrain()
        run.build()
        run.fit()
        run.test()
        return record.complete(run.metrics, **run.results)


@dataclass
class Run:
    """One run as :func:`train` takes it through its phases: the config it trains, its record, the resume plan, and
    what each phase makes for the next. The pre-training run of ``pretrain=autoencoder`` is a ``Run`` of its own."""

    cfg: DictConfig
    record: RunRecord
    resume_plan: resume.ResumePlan
    #: torch threads, compile, channels_last, the GPU share of packed jobs: built once, by :meth:`prepare`
    speed: Any = None
    #: ``pretrain=autoencoder`` (and not continuing from this run's own checkpoint): the pre-training run's config
    pretraining: DictConfig | None = None
    #: the run dir whose encoder this run starts from (``encoder_from``, or the pre-training run)
    encoder_from: str | None = None
    datamodule: Any = None
    task: Any = None
    callbacks: list = field(default_factory=list)
    trainer: Any = None
    #: the final train/val/test values, and the record's other end fields (best_checkpoint, averaged, epochs...)
    metrics: dict[str, float | None] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def plan(cls, cfg: DictConfig, record: RunRecord) -> Run:
        """Validate, then decide once from the run dir's files: a fresh start, a continuation (the run's own config
        from then on), or nothing to do (``resume=true`` on a finished run)."""
        from experiments.run.pretrain import pretraining_config, wants_pretraining

        validate(cfg)
        plan = resume.plan(cfg, record.overrides, record.choices)
        if plan.completed is not None:
            return cls(cfg, record, plan)
        if plan.cfg is not cfg:  # a continued run's own config.yaml, perhaps written before a key retired
            plan.cfg = upgrade_config(plan.cfg)
        run = cls(record.follow(plan), record, plan)
        if not plan.resuming:  # a continued run's checkpoint holds its encoder already
            if wants_pretraining(run.cfg):
                run.pretraining = pretraining_config(run.cfg)
            elif run.cfg.get("encoder_from") is not None:
                run.encoder_from = str(run.cfg.encoder_from)
        return run

    @property
    def finished(self) -> bool:
        """``resume=true`` found the run completed (or pruned): there is nothing to do."""
        return self.resume_plan.completed is not None

    def prepare(self, speed: Any = None) -> None:
        """Prepare the process: the config shown once (not per DDP rank or sweep job), Lightning's noise off, and
        the speed settings (``speed``: the parent run's, for a pre-training run) built and applied before any
        work."""
        from experiments.speed.settings import SpeedSettings

        if speed is not None:
            self.speed = speed
            return
        if self.cfg.get("print_config", True) and _is_rank_zero() and _multirun_job() is None:
            from experiments.config_tree import print_run_config  # compact by default; print_config=full: the tree

            print_run_config(self.cfg, self.record.choices, self.record.overrides)
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        self.speed = SpeedSettings.from_config(self.cfg)
        self.speed.apply(str(self.cfg.trainer.get("accelerator", "auto")))

    def pretrain(self) -> None:
        """``pretrain=autoencoder``: train the autoencoder's run in ``<run dir>/pretrain`` first, through the same
        phases with a record of its own (skipped when ``resume=true`` finds it finished), and start this run's
        encoder from it."""
        if self.pretraining is None:
            return
        if _is_rank_zero():  # this run's config first: resume=true after a stop in pre-training continues *this* run
            resume.snapshot(self.cfg, self.cfg.run_dir)
        with RunRecord.open(self.pretraining) as record:
            pre = Run.plan(self.pretraining, record)
            if pre.finished:
                record.skipped(pre.resume_plan)
            else:
                pre.prepare(self.speed)
                pre.build()
                pre.fit()
                pre.test()
                record.complete(pre.metrics, **pre.results)
        self.encoder_from = str(self.pretraining.run_dir)

    def build(self) -> None:
        """Seeded, the data module, task, callbacks, loggers and trainer; the encoder started from another run's; a
        continued run's checkpoint verified (read once, before anything is written)."""
        import lightning as L

        from experiments import build

        L.seed_everything(self.cfg.seed, workers=True, verbose=False)
        self.datamodule = build.build_datamodule(self.cfg, self.speed)
        self.task = build.build_task(self.cfg)
        if self.encoder_from is not None:
            from experiments.run.transfer import start_encoder

            self.results.update(start_encoder(self.task.network, self.encoder_from))
        checkpoint = self.resume_plan.verify(self.task)  # weights-only, matching network, full training state
        self.callbacks = build.build_callbacks(self.cfg, self.task, self.speed)
        self.trainer = build.build_trainer(self.cfg, self.callbacks, build.build_logger(self.cfg),
                                           checkpoint=checkpoint)

    def fit(self) -> None:
        """The record says ``running`` (rank zero), then the Trainer fits, from the plan's checkpoint if any."""
        from experiments.run.history import epoch_metrics

        self.record.begin(self.trainer, self.task.network, self.callbacks)
        start = self.resume_plan.checkpoint
        self.trainer.fit(self.task, datamodule=self.datamodule, ckpt_path=start, weights_only=True)
        self.metrics = epoch_metrics(self.trainer.callback_metrics)

    def test(self) -> None:
        """Test the run's result: the best checkpoint's weights, or with ema/swa the final averaged ones (saved for
        evaluate); then the best epoch's score, the linear probe (``probe=true``) and the record's end fields."""
        from experiments.run.checkpoints import load_weights
        from experiments.run.history import epoch_metrics

        trainer, task = self.trainer, self.task
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        averaged = weight_averaging(self.callbacks)
        if averaged:  # the averaged weights (in the task after fit) are tested
            best = str(self.record.dir.averaged_checkpoint)
            trainer.save_checkpoint(best, weights_only=True)  # an end result to evaluate, not to resume from
        elif best:  # not test(ckpt_path=best): that also rolls callback states (the history) back to the best epoch
            load_weights(task, best)
        self.metrics.update(epoch_metrics(trainer.test(task, datamodule=self.datamodule, verbose=False)[0]))
        self.metrics.update(best_score(trainer, task))
        if self.cfg.get("probe"):  # the tested weights' encoder, read out by a linear classifier: test/probe_acc
            self.metrics.update(linear_probe(task, self.datamodule, self.record.dir.root, best))
        self.results.update(best_checkpoint=best, averaged=averaged, epochs=trainer.current_epoch,
                            **data_stats(self.datamodule))


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
    """The training split's per-channel mean/std, so that ``evaluate --predict`` normalises new images the same way;
    the class names, split sizes and data warnings, so that ``evaluate`` and ``report`` need not read the data."""
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    stats: dict[str, Any] = {"data_stats": {"mean": list(mean), "std": list(std)}} if mean and std else {}
    for name in ("class_names", "split_sizes", "data_warnings"):
        value = getattr(datamodule, name, None)
        if value:
            stats[name] = list(value) if isinstance(value, (list, tuple)) else dict(value)
    return stats


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
    failed, diverged or was pruned by a search (its record says which: ``pruned`` is not a failure, exit 0)."""
    _composed()
    job = _multirun_job()
    try:
        record = train(cfg)
    except RunInterrupted as err:  # SIGINT/SIGTERM ends the whole process, sweep included: 128 + signal number
        if _is_rank_zero():
            print(f"interrupted: {err}\n{_resume_hint(cfg, job)}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except RunPruned as err:  # the search stopped this trial early: recorded as pruned, the sweep goes on
        if _is_rank_zero():
            print(f"{'' if job is None else f'job {job} '}{err}; run dir: {cfg.run_dir}", flush=True)
        return None
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
    skipped = f" (already {record.get('status')}; skipped)" if record.get("skipped") else ""  # resume=true, finished
    if _is_rank_zero():  # under DDP every process returns here; one summary is enough
        print(f"run dir: {record['run_dir']}{skipped}\n{shown}")
    from experiments.specs import TASKS

    return metrics.get(TASKS[record["task"]].monitor if record["task"] in TASKS else TASKS["classification"].monitor)


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
    try:  # a retired key (model.norm=none): Hydra alone would only say it is not in the config
        upgrade_config(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    cli()
