"""Continue a run in its own run dir, or skip it when it already completed.

How a run is continued (see README "Resume"):

* ``python -m experiments.train resume=true hydra.run.dir=<run dir>`` continues that run from
  ``<run dir>/checkpoints/last.ckpt`` (written every epoch, and at the interrupted batch on
  SIGINT/SIGTERM), with the configuration it was started with (``<run dir>/config.yaml``), so the
  original overrides need not be repeated; overrides that would change the run are refused. A run
  whose ``metrics.json`` says "completed" (or "pruned", by a search) is skipped; one that never wrote a
  checkpoint starts over in the same dir.
* The same with ``-m ... hydra.sweep.dir=<sweep dir>`` re-launches a sweep: every job maps to its
  old job dir (same job number for the same sweep order), completed jobs are skipped, interrupted
  ones continue, missing ones run.
* ``ckpt_path=<file>`` starts from that checkpoint's full training state with the *current*
  configuration, in the current run dir (a new one unless ``hydra.run.dir`` names one): a branch of
  a run, or recovery from a copied checkpoint.

Hydra rewrites ``<run dir>/.hydra/{config,overrides}.yaml`` on every invocation, so the first start
keeps its own copy of the composed config (``config.yaml``) and a resume puts Hydra's record of the
original run back; ``evaluate`` and the report then see the run as it was started. Everything here
reads files and OmegaConf only (no torch) until a checkpoint is verified, so a plan costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError
from experiments.naming import override_key, recordable
from experiments.run.layout import RunDir
from experiments.run.schema import FINISHED

#: keys whose value does not change a run's numbers, so a resume may set them differently
NEUTRAL_KEYS = ("trainer.enable_progress_bar", "trainer.enable_model_summary", "data.num_workers")


@dataclass
class ResumePlan:
    """What ``train`` does with this invocation, decided once from the files in the run dir."""

    cfg: DictConfig
    overrides: list[str]
    choices: dict[str, str]
    checkpoint: Path | None = None  # continue from here (None: start from scratch)
    completed: dict[str, Any] | None = None  # the finished run's record: nothing to do
    previous: dict[str, Any] = field(default_factory=dict)  # the earlier record, when continuing a run

    @property
    def resuming(self) -> bool:
        return self.checkpoint is not None

    def verify(self, module: Any) -> dict[str, Any] | None:
        """Load and check the checkpoint to continue from, once, before anything is written; None for a fresh start.

        The returned checkpoint is handed to the Trainer's checkpoint IO, which gives it back to ``fit``
        instead of reading the file a second time."""
        if self.checkpoint is None:
            return None
        from experiments.run.checkpoints import verify_resumable

        return verify_resumable(self.checkpoint, module)


def plan(cfg: DictConfig, overrides: list[str], choices: dict[str, str]) -> ResumePlan:
    """Decide between a fresh start, a continuation, and a skip; raise ``ConfigError`` for a changed run."""
    overrides = recordable(overrides)
    if cfg.get("ckpt_path"):
        return ResumePlan(cfg, overrides, choices, checkpoint=Path(str(cfg.ckpt_path)))
    if not cfg.get("resume"):
        return ResumePlan(cfg, overrides, choices)
    run = RunDir(str(cfg.run_dir))
    previous = run.read_record() or {}
    original = list(previous.get("overrides") or [])
    last = run.last_checkpoint if run.last_checkpoint.is_file() else None
    if run.config.is_file():  # this dir holds a run that got to training: it must be the same run (e.g. same sweep job)
        _refuse_changes(overrides, original, run.root)
    if previous.get("status") in FINISHED:  # completed, or pruned by a search: nothing left to do
        return ResumePlan(cfg, overrides, choices, completed=previous, previous=previous)
    if not run.config.is_file():  # never got to training: start over here with this invocation's config
        return ResumePlan(cfg, overrides, choices, checkpoint=last)
    base = OmegaConf.load(run.config)
    assert isinstance(base, DictConfig)
    OmegaConf.set_struct(base, False)
    base.run_dir = str(run.root)
    base.resume, base.ckpt_path = True, None
    for key in {override_key(o) for o in overrides} & set(NEUTRAL_KEYS):  # only what this invocation set
        OmegaConf.update(base, key, OmegaConf.select(cfg, key), force_add=True)
    return ResumePlan(base, original, dict(previous.get("choices") or choices), checkpoint=last, previous=previous)


def _refuse_changes(current: list[str], original: list[str], run_dir: Path) -> None:
    normalised = {o.lstrip("+") for o in original}
    for override in current:
        key = override_key(override)
        if key in NEUTRAL_KEYS or override.lstrip("+") in normalised:
            continue
        value = override.split("=", 1)[1] if "=" in override else ""
        started = " ".join(original) or "no overrides"
        raise ConfigError(
            key, value, f"resume=true continues {run_dir} with the configuration it was started with ({started}), "
            "and this override would change it",
            "drop the override to continue that run, or start a new run (without resume=true) for the change",
        )


def snapshot(cfg: DictConfig, run_dir: str | Path) -> None:
    """Keep the composed config of a run's first start (unresolved, like Hydra's) as ``<run dir>/config.yaml``."""
    run = RunDir(run_dir)
    if run.config.exists():
        return
    run.root.mkdir(parents=True, exist_ok=True)
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    run.config.write_text(OmegaConf.to_yaml(OmegaConf.create(container)))


def restore_hydra_record(run_dir: str | Path, overrides: list[str]) -> None:
    """Put the original run's config and overrides back into ``.hydra/`` after this invocation's Hydra rewrote them."""
    run = RunDir(run_dir)
    if not run.hydra_dir.is_dir() or not run.config.is_file():
        return
    run.hydra_config.write_text(run.config.read_text())
    run.hydra_overrides.write_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
