"""The run directory: the one place that spells out its file names, and its atomic JSON writer.

A run dir is self-describing (the report, ``evaluate`` and ``resume`` need nothing else)::

    <run dir>/
      .hydra/config.yaml overrides.yaml   Hydra's record of this invocation (rewritten on every start)
      config.yaml                         the composed config of the run's *first* start (kept for resume)
      metrics.json                        the RunRecord: status, metrics, provenance, history, diagnostics
      checkpoints/best.ckpt last.ckpt     best by the monitored val metric; last epoch or interrupted batch
      evaluation-<ckpt>.json              written by python -m experiments.evaluate
      tensorboard/ csv/                   logger output
      figures/<tag>/step_<n>.png          every image a diagnostic or task logs, whatever the logger
      train.log

Standard library only, so the config-error path, validation and the sweep callback can use it without
importing torch or Lightning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS = "metrics.json"
RUN_CONFIG = "config.yaml"
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = "config.yaml"
HYDRA_OVERRIDES = "overrides.yaml"
CHECKPOINTS = "checkpoints"
#: checkpoint names (``checkpoints/<name>.ckpt``) a user can pick by name, e.g. ``evaluate RUN ckpt=last``
BEST, LAST = "best", "last"
CHECKPOINT_SUFFIX = ".ckpt"
FIGURES = "figures"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def config(self) -> Path:
        """The composed config of the first start (``.hydra/config.yaml`` is rewritten by every invocation)."""
        return self.root / RUN_CONFIG

    @property
    def hydra_dir(self) -> Path:
        return self.root / HYDRA_DIR

    @property
    def hydra_config(self) -> Path:
        return self.hydra_dir / HYDRA_CONFIG

    @property
    def hydra_overrides(self) -> Path:
        return self.hydra_dir / HYDRA_OVERRIDES

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.ckpt`` (``best``, ``last``, ``last_good``)."""
        return self.checkpoints / f"{name}{CHECKPOINT_SUFFIX}"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint(LAST)

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint(BEST)

    def evaluation(self, label: str) -> Path:
        """Where ``python -m experiments.evaluate`` saves the metrics of checkpoint ``label``."""
        return self.root / f"evaluation-{label}.json"

    def figure(self, tag: str, step: int) -> Path:
        """A diagnostics/sample image as a PNG: ``figures/<tag with / as __>/step_<step>.png``."""
        return self.root / FIGURES / tag.replace("/", "__") / f"step_{step:06d}.png"

    def has_started(self) -> bool:
        """Whether an earlier invocation got as far as training here (config snapshot or a checkpoint)."""
        return self.config.is_file() or self.last_checkpoint.is_file()

    def read_record(self) -> dict[str, Any] | None:
        """The run's ``metrics.json``, or None when it is absent or unreadable."""
        try:
            record = read_json(self.metrics)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def config_file(self) -> Path | None:
        """The config to rebuild the run from: the first start's snapshot, else Hydra's record."""
        return next((p for p in (self.config, self.hydra_config) if p.is_file()), None)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
