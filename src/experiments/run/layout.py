"""The run directory: the one place that spells out its file names, and its atomic JSON writer.

A run dir is self-describing (the report, ``evaluate`` and ``resume`` need nothing else)::

    <run dir>/
      .hydra/config.yaml overrides.yaml   Hydra's record of this invocation (rewritten on every start)
      config.yaml                         the composed config of the run's *first* start (kept for resume)
      metrics.json                        the RunRecord: status, metrics, provenance, history, diagnostics
      checkpoints/best.ckpt last.ckpt     best by the monitored val metric; last epoch or interrupted batch
      checkpoints/averaged.ckpt           the final averaged weights (callbacks ema or swa), the ones tested
      checkpoints/init.ckpt               the weights before the first step (the landscape's interpolation start)
      landscape.json                      python -m experiments.landscape: interpolation, slices, curvature
      evaluation-<ckpt>.json              written by python -m experiments.evaluate
      probe.json                          the linear probe of the encoder (probe=true, or evaluate --probe)
      calibration.json                    evaluate --temperature-scale: the fitted T, test NLL/ECE before and after
      test_per_image.json                 segmentation: each test image's per-class intersection and union (the
                                          report's per-image bootstrap of test mIoU)
      pretrain/                           pretrain=autoencoder: the unsupervised run this run's encoder starts from
      tensorboard/<run name>/ csv/        logger output (the TensorBoard run named by its overrides, naming.py)
      figures/<tag>/step_<n>.png          every image a diagnostic or task logs, whatever the logger
      figures/explain/                    python -m experiments.explain: a figure per image, explain.json
      profiler/fit-profile.txt            debug=profiler's report (and a Chrome trace with trainer.profiler=pytorch)
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
#: the final averaged weights of a run with callbacks ema or swa (what it tests)
AVERAGED = "averaged"
#: ModelCheckpoint's file-name pattern when it keeps the k > 1 best (``best-epoch007.ckpt``)
RANKED_BEST = "best-epoch{epoch:03d}"
CHECKPOINT_SUFFIX = ".ckpt"
FIGURES = "figures"
#: the TensorBoard logger's folder; each run's events lie in a sub-directory named after the run
TENSORBOARD = "tensorboard"
#: TensorBoard's event-file names (its own pattern)
TENSORBOARD_EVENTS = "events.out.tfevents.*"
#: the profiler report folder (``debug=profiler``) and its file stem: Lightning writes ``<stage>-profile.txt``
PROFILER, PROFILE = "profiler", "profile"
#: the linear probe's result (run/probe.py) and the nested pre-training run's folder (run/pretrain.py)
PROBE = "probe.json"
PRETRAINING = "pretrain"
#: a segmentation run's per-test-image intersections and unions by class (JSON, read back without pickle)
PER_IMAGE = "test_per_image.json"
#: ``evaluate --temperature-scale``: the temperature fitted on validation, the test NLL and ECE before and after
CALIBRATION = "calibration.json"
#: python -m experiments.explain: its folder under figures/ (one figure per image) and its record there
EXPLAIN, EXPLAIN_RECORD = "explain", "explain.json"
#: the weights a run started from (``checkpoints/init.ckpt``): the start of the loss landscape's interpolation
INIT = "init"
#: the loss landscape of the run (``python -m experiments.landscape``, diagnostics ``landscape``): slices, curvature
LANDSCAPE = "landscape.json"


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

    @property
    def averaged_checkpoint(self) -> Path:
        return self.checkpoint(AVERAGED)

    @property
    def profiler(self) -> Path:
        return self.root / PROFILER

    @property
    def probe(self) -> Path:
        """The linear probe of the run's encoder: accuracies, feature size, solver (``run/probe.py``)."""
        return self.root / PROBE

    @property
    def init_checkpoint(self) -> Path:
        """The weights before the first optimiser step (written by every fresh run; a continued run keeps its own)."""
        return self.checkpoint(INIT)

    @property
    def landscape(self) -> Path:
        """The loss landscape's numbers: interpolation, slices, curvature, and the settings that made them."""
        return self.root / LANDSCAPE

    @property
    def calibration(self) -> Path:
        """Temperature scaling's result: T, the test split's accuracy, NLL and ECE before and after."""
        return self.root / CALIBRATION

    @property
    def per_image(self) -> Path:
        """Each test image's per-class pixel intersection and union (segmentation), for the report's bootstrap."""
        return self.root / PER_IMAGE

    @property
    def pretraining(self) -> RunDir:
        """The run dir of this run's unsupervised pre-training (``pretrain=autoencoder``), a complete run itself."""
        return RunDir(self.root / PRETRAINING)

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def explain(self) -> Path:
        """Where ``python -m experiments.explain`` writes its figures and ``explain.json`` by default."""
        return self.root / FIGURES / EXPLAIN

    def tensorboard_events(self) -> Path | None:
        """The folder holding this run's TensorBoard event files (``tensorboard/<run name>/``, or ``tensorboard/``
        itself for runs from before run names); None when there are none."""
        if not self.tensorboard.is_dir():
            return None
        return min((p.parent for p in self.tensorboard.rglob(TENSORBOARD_EVENTS)), default=None)

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
