"""``RunRecord``: the one writer of ``<run dir>/metrics.json``, and the owner of a run's status.

A run's status goes ``running`` -> ``completed | failed | interrupted | pruned`` and nothing else writes it: the
record is a context manager around the whole of ``train(cfg)``, so whatever stops a run (a config
mistake, a bad checkpoint, a crash while fitting, a signal, a search pruning the trial) leaves a record saying
why, with the diagnostics gathered so far, before the error goes on to the caller. Three rules keep records
truthful:

* before training starts, a failure never overwrites the record of the run being resumed (a typo in a
  ``resume=true`` command must not turn a finished run into a failed one);
* under DDP only the global-zero process writes;
* every field is one that :mod:`experiments.run.schema` declares (its meaning, and when it is written): a field it
  does not know is refused (:class:`~experiments.run.schema.UnknownField`), so the schema, the README's table and the
  report's reader cannot drift from what is written. Fields come in through :meth:`RunRecord.add`,
  :meth:`RunRecord.complete`'s keywords, a callback's or the network's ``run_summary()``.
"""

from __future__ import annotations

import inspect
import logging
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError, RunInterrupted, RunPruned
from experiments.naming import (
    RECORDED_GROUPS,
    current_swept_keys,
    debug_mode,
    group_choices,
    override_key,
    run_tags,
    task_overrides,
)
from experiments.run import schema
from experiments.run.layout import RunDir, read_json, write_json
from experiments.specs import model_option, run_task, unused_choices

log = logging.getLogger(__name__)


def provenance() -> dict[str, Any]:
    """What it takes to reproduce a result: interpreter and library versions, and the git commit of a checkout."""
    versions = {"python": platform.python_version()}
    for package in ("experiments", "torch", "lightning", "torchvision", "hydra-core", "torchmetrics"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    source = Path(__file__).resolve().parent
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
        if commit:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                                    capture_output=True, text=True, timeout=5).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an installed wheel)
        pass
    return {"versions": versions, "git_commit": commit, "git_dirty": dirty}


def hyperparameters(cfg: DictConfig, choices: dict[str, str], overrides: list[str],
                    swept: list[str] | None = None) -> dict[str, Any]:
    """The fixed key set logged to TensorBoard's HParams tab, in column order: the sweep's ``swept`` keys first,
    then group choices, seed, a few scalars and every other overridden key, so that the columns line up across a
    sweep whose jobs share their override keys. Keys are written as they are overridden (``optimizer.lr``), so a
    swept value never appears twice under two names."""
    hp: dict[str, Any] = {}
    for key in swept or []:
        hp[key] = choices[key] if key in choices else OmegaConf.select(cfg, key, default=None)
    hp.update({g: choices.get(g, "") for g in RECORDED_GROUPS if g not in hp})
    hp.update({key: OmegaConf.select(cfg, key, default=None) for key in
               ("seed", "optimizer.lr", "data.batch_size", "trainer.max_epochs") if key not in hp})
    hp.update(
        tags=",".join(run_tags(cfg)),
    )
    for item in overrides:
        key = override_key(item)
        if key not in hp and not key.startswith("hydra"):
            hp[key] = OmegaConf.select(cfg, key, default=None)
    return {k: ("" if v is None else v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hp.items()}


def final_columns(metrics: dict[str, float | None], params: int | None, wall_time_s: float | None) -> dict[str, float]:
    """The HParams metric columns: the final metrics the report uses plus parameter count and wall time, ordered so
    that TensorBoard's first five (the ones it shows unasked) are the score on test, val and train, params and wall
    time; then the losses, then the rest. None (a diverged value) becomes NaN so every run has the same columns."""
    best = next((k for k in metrics if k.startswith("val/best_")), None)
    score = best.removeprefix("val/best_") if best else "acc"
    lead = [f"{split}/{score}" for split in ("test", "val", "train")]
    losses = [f"{split}/loss" for split in ("test", "val", "train")]
    values: dict[str, float | None] = dict(metrics)
    values.update(params=params, wall_time_s=wall_time_s)
    order = [*lead, "params", "wall_time_s", *losses]
    keys = [k for k in order if k in values] + sorted(k for k in values if k not in order)
    return {k: float("nan") if values[k] is None else float(values[k]) for k in keys}


def log_hparams(logger: Any, hparams: dict[str, Any], metrics: dict[str, float], swept: list[str] | None = None,
                step: int | None = None) -> None:
    """HParams with their final metrics: our TensorBoard logger writes the table (swept keys first, these metric
    columns only); another logger that pairs them (a plain TensorBoardLogger) gets ``final/<metric>``; the rest
    (CSV, MLflow) get the parameters and the ``final/<metric>`` values side by side."""
    if hasattr(logger, "log_hparams_table"):
        logger.log_hparams_table(hparams, metrics, differs=swept or (), step=step)
    else:
        final = {f"final/{k}": v for k, v in metrics.items()}
        if "metrics" in inspect.signature(logger.log_hyperparams).parameters:
            logger.log_hyperparams(hparams, metrics=final)
        else:
            logger.log_hyperparams(hparams)
            logger.log_metrics(final, step=step)
    logger.save()


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0]


class RunRecord:
    """The run's ``metrics.json`` payload and its status transitions; use as ``with RunRecord.open(cfg) as record``."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.dir = RunDir(str(cfg.run_dir))
        self.choices, self.overrides = group_choices(cfg), task_overrides(cfg)
        self.payload: dict[str, Any] = {
            **schema.initial(), "task": run_task(cfg), "choices": self.choices,
            "overrides": self.overrides, "seed": cfg.get("seed"), "run_dir": str(self.dir.root),
            "tags": run_tags(cfg), "debug": debug_mode(cfg, self.choices),
        }
        # a resume protects the record it continues until training has really started again
        self._protected = bool(cfg.get("resume")) and self.dir.metrics.exists()
        self._writer = True
        self._trainer: Any = None
        self._callbacks: list = []
        self._earlier_wall_time = 0.0
        self._clock = time.perf_counter()

    @classmethod
    def open(cls, cfg: DictConfig) -> RunRecord:
        return cls(cfg)

    # -- the context: every way out of a run leaves a record ------------------------------------------------

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> bool:
        if err is None:
            return False
        if isinstance(err, RunPruned):  # a search stopped the trial: not a failure, and resume=true skips it
            self._end("pruned", str(err))
        elif isinstance(err, RunInterrupted):  # SIGINT/SIGTERM: checkpoint written at a batch end; resume continues
            self._end("interrupted", str(err), checkpoint=str(err.checkpoint) if err.checkpoint else None)
        elif isinstance(err, (KeyboardInterrupt, SystemExit)):  # a second signal, or Lightning's own SIGTERM exit
            self._end("interrupted", f"aborted ({type(err).__name__}) without a new checkpoint", summaries=False)
        elif isinstance(err, Exception):
            self._end("failed", str(err) if isinstance(err, ConfigError) else _one_line(err))  # ConfigError: 1 sentence
        return False  # the caller decides what an error means (exit status, next sweep job)

    # -- transitions ------------------------------------------------------------------------------------------

    def add(self, **fields: Any) -> None:
        """Put declared fields into the record (``unused_choices``, ``class_names``...); they are written with the
        next transition. Raises :class:`~experiments.run.schema.UnknownField` for a field the schema lacks."""
        schema.check(fields)
        self.payload.update(fields)

    def follow(self, plan: Any) -> DictConfig:
        """Adopt the resume plan: a continued run keeps its own config, overrides and choices."""
        self.cfg, self.choices, self.overrides = plan.cfg, plan.choices, plan.overrides
        self.payload.update(task=run_task(self.cfg), choices=self.choices, overrides=self.overrides, seed=self.cfg.seed,
                            tags=run_tags(self.cfg), debug=debug_mode(self.cfg, self.choices))
        if plan.resuming:
            self.payload.update(resumed_from=str(plan.checkpoint), resumes=int(plan.previous.get("resumes", 0)) + 1)
            self._earlier_wall_time = float(plan.previous.get("wall_time_s") or 0.0)
        return self.cfg

    def skipped(self, plan: Any) -> dict[str, Any]:
        """``resume=true`` on a finished run (completed or pruned): nothing to do; Hydra's record of the run is put
        back."""
        from experiments.run.resume import restore_hydra_record

        log.info("%s already %s; skipped (resume=true)", self.dir.root, plan.completed.get("status"))
        restore_hydra_record(self.dir.root, plan.completed.get("overrides") or [])
        return {**plan.completed, "skipped": True}

    def begin(self, trainer: Any, network: Any, callbacks: list) -> None:
        """Training is about to start: snapshot the config and write the ``running`` record (rank zero only)."""
        from experiments.run.resume import restore_hydra_record, snapshot

        self._trainer, self._callbacks = trainer, callbacks
        self._writer, self._protected = bool(trainer.is_global_zero), False
        self.add(params=sum(p.numel() for p in network.parameters()), world_size=trainer.world_size,
                 provenance=provenance())
        if hasattr(network, "run_summary"):  # what the network says of itself (a zoo model: its swapped modules)
            self.add(**network.run_summary())
        # a chosen group the model does not read (model=cnn upsampling=unpool) trains, said once and recorded
        unused = unused_choices(model_option(self.cfg), self.choices, {override_key(o) for o in self.overrides})
        if unused:
            self.add(unused_choices=unused)
        if self._writer:
            for group, reason in unused.items():
                print(f"note: {group}={self.choices[group]} is not used ({reason})", file=sys.stderr)
            snapshot(self.cfg, self.dir.root)
            if "resumed_from" in self.payload:
                restore_hydra_record(self.dir.root, self.overrides)
            self._write()

    def complete(self, metrics: dict[str, float | None], **fields: Any) -> dict[str, Any]:
        """The run finished: final metrics, wall time, the end ``fields`` (each declared in the schema), callbacks'
        summaries, HParams to the logger."""
        metrics = {**metrics, **self._callback_metrics()}
        schema.check_metrics(metrics)
        self.add(status="completed", metrics=metrics, wall_time_s=self._wall_time(), **fields)
        self.add(**self._summaries())
        if self._writer:
            loggers = self._trainer.loggers if self._trainer is not None else []
            swept = current_swept_keys()
            hparams = hyperparameters(self.cfg, self.choices, self.overrides, swept)
            final = final_columns(metrics, self.payload.get("params"), self.payload.get("wall_time_s"))
            step = self._trainer.global_step if self._trainer is not None else None
            for logger in loggers:  # TensorBoard's HParams, CSV's hparams.yaml, MLflow's params
                log_hparams(logger, hparams, final, swept, step)
            self._write_per_image()
            self._write()
        return self.payload

    # -- internals --------------------------------------------------------------------------------------------

    def _end(self, status: str, error: str, summaries: bool = True, **fields: Any) -> None:
        self.add(status=status, error=error, wall_time_s=self._wall_time(), **fields)
        if summaries:
            self._add_on_the_way_out(self._summaries())
        if self._writer and not self._protected:
            self._write()

    def _callback_metrics(self) -> dict[str, float]:
        """Final metrics that callbacks measured after the test (``run_metrics()``: the loss landscape's curvature),
        beside the trainer's."""
        merged: dict[str, float] = {}
        for callback in self._callbacks:
            if hasattr(callback, "run_metrics"):
                merged.update(callback.run_metrics())
        return merged

    def _summaries(self) -> dict[str, Any]:
        """What callbacks contribute to ``metrics.json``: every ``run_summary()`` dict (history, diagnostics...)."""
        merged: dict[str, Any] = {}
        for callback in self._callbacks:
            if hasattr(callback, "run_summary"):
                merged.update(callback.run_summary())
        task = getattr(self._trainer, "lightning_module", None)
        if hasattr(task, "run_summary"):  # the task's test split by class: per_class, confusion_matrix, class_names
            merged.update(task.run_summary())
        return merged

    def _add_on_the_way_out(self, fields: dict[str, Any]) -> None:
        """Like :meth:`add` while an error is already leaving the run: an undeclared field is logged and left out,
        so that it cannot replace the error that ended the run, nor keep the record from being written."""
        for name, value in fields.items():
            try:
                self.add(**{name: value})
            except schema.UnknownField as err:
                log.error("%s", err)

    def _write_per_image(self) -> None:
        """The task's per-test-image counts (a segmentation run's intersections and unions) beside metrics.json, as
        ``test_per_image.json``: too long for the record, and what the report's per-image bootstrap of mIoU needs."""
        task = getattr(self._trainer, "lightning_module", None)
        result = task.per_image_result() if hasattr(task, "per_image_result") else None
        if result:
            write_json(self.dir.per_image, result)

    def _wall_time(self) -> float:
        return round(self._earlier_wall_time + time.perf_counter() - self._clock, 2)

    def _write(self) -> None:
        write_json(self.dir.metrics, self.payload)

    @staticmethod
    def add_metrics(run_dir: str | Path, metrics: dict[str, float]) -> bool:
        """Add metrics measured after a completed run (``evaluate --probe``: ``test/probe_acc``) to its record, so the
        report sees them; the run's own metrics keep their values. False (nothing written) unless it completed.
        Metric names are the schema's (``<split>/<name>``); another name raises ValueError."""
        schema.check_metrics(metrics)
        run = RunDir(run_dir)
        try:
            record = read_json(run.metrics)
        except (OSError, ValueError):
            return False
        if not isinstance(record, dict) or record.get("status") != "completed":
            return False
        record["metrics"] = {**(record.get("metrics") or {}), **metrics}
        write_json(run.metrics, record)
        return True

