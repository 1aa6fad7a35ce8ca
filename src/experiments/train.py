"""``python -m experiments.train [overrides]`` — train one configuration, or a sweep with ``-m``.

Only Hydra is imported at module level so that ``--help`` and ``--cfg job`` answer in a second;
Lightning is imported when training starts.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from experiments.config import conf_dir
from experiments.diagnostics.errors import TrainingDiverged
from experiments.validation import ConfigError


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
    from experiments.signals import RunInterrupted
    from experiments.training import train

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


if __name__ == "__main__":
    main()
