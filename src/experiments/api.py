"""``from experiments import run, load``: train and reload runs from Python (a notebook, a script) without a shell.

Why a module of its own: ``python -m experiments.train`` goes through ``hydra.main``, which reads ``sys.argv``,
changes logging for the whole process and keeps Hydra's global state for the life of the process — fine for a
command that exits, not for a Jupyter kernel that trains many runs. Here the same pieces are called directly:

* **compose** with :func:`experiments.config.compose` (Hydra's compose API, the config tree and the overrides of the
  command line, retired keys refused by :func:`~experiments.config.upgrade_config`), inside Hydra's own
  save-and-restore of its global state, so nothing is left initialised after a call, failed or not. A config Hydra
  cannot compose raises :class:`ComposeError`, a :class:`~experiments.errors.ConfigError` whose text is the line the
  CLI prints after ``error:``;
* **place** the run dir where the CLI would (``hydra.run.dir`` of ``conf/train.yaml``: ``paths.output_dir``, i.e.
  ``$EXPERIMENTS_OUTPUT_DIR`` or ``outputs/``, then ``runs/<date>/<time>``; a typed ``hydra.run.dir=...`` wins) and
  write Hydra's ``.hydra/config.yaml`` and ``overrides.yaml`` there, so a run made here reads like one of the CLI's
  (``resume=true hydra.run.dir=<it>`` continues it from the shell);
* **train** with :func:`experiments.train.train`, the CLI's own code path: validation (its one-sentence
  ``ConfigError`` raised, not printed), the run record, checkpoints and test. The process-wide things a run
  changes and a kernel keeps — the SIGINT/SIGTERM handlers of the graceful stop, the root logger's level and its
  ``train.log`` handler — are put back afterwards, so the kernel's interrupt button works after a run;
* **load** a run dir back (:func:`load`): config, the task with its best weights through the safe loader
  (``evaluate``'s :func:`~experiments.evaluate._task_with_weights`, weights-only, checked to match), and history.

Notebook output: the config summary and Lightning's few start-up lines are kept; the per-batch progress bar is off
unless asked for (``progress=True``) or chosen in the overrides, because in a notebook it repeats itself into the
saved cell output. The rest of the log goes to ``<run dir>/train.log`` as under the CLI.
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.config import compose, conf_dir, hydra_error_line
from experiments.errors import ConfigError
from experiments.naming import override_key
from experiments.run.layout import RunDir

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ComposeError", "LoadedRun", "RunResult", "configure", "load", "run"]

#: the override that places a run dir, as on the command line (``hydra.run.dir=<dir>``)
RUN_DIR_KEY = "hydra.run.dir"


class ComposeError(ConfigError):
    """Hydra could not compose the overrides (an unknown option, a key the config lacks, a sweep without ``-m``): the
    one line ``python -m experiments.train`` prints after ``error:``, as this exception's text."""

    def __init__(self, error: Exception, overrides: Sequence[str]) -> None:
        self.key, self.value = "overrides", list(overrides)
        ValueError.__init__(self, hydra_error_line(error))


def overrides_of(overrides: Sequence[str] | str = (), keywords: Mapping[str, Any] | None = None) -> list[str]:
    """The command line ``run``'s arguments stand for: the ``overrides`` as typed (one string is split as a shell
    would), then each keyword as ``key=value`` (``optimizer.lr=0.01`` through ``**{"optimizer.lr": 0.01}``), values
    written as Hydra reads them: ``true``/``false``, ``null``, ``[a,b]``, and a string with a space or comma quoted."""
    typed = shlex.split(overrides) if isinstance(overrides, str) else [str(o) for o in overrides]
    return typed + [f"{key}={_hydra_value(value)}" for key, value in (keywords or {}).items()]


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if isinstance(value, str) and any(c in text for c in " ,\t"):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text


def configure(overrides: Sequence[str] | str = (), /, **keywords: Any) -> DictConfig:
    """The config that ``run`` with the same arguments trains, composed as the command line composes it, with
    ``run_dir`` set to where the CLI would create the run dir (nothing is created here).

    Raises :class:`ComposeError` (Hydra's error, the CLI's line) or :class:`~experiments.errors.ConfigError` (a retired
    key); the run's own validation happens in :func:`run`, as in the CLI."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    typed = overrides_of(overrides, keywords)
    try:
        cfg = compose(typed)  # Hydra's global state is saved and restored around the composition, on error too
    except (HydraException, OmegaConfBaseException) as err:
        raise ComposeError(err, typed) from None
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(cli_run_dir(cfg, typed))
    return cfg


def cli_run_dir(cfg: DictConfig, overrides: Sequence[str]) -> Path:
    """Where ``python -m experiments.train <overrides>`` would put the run: the last typed ``hydra.run.dir``, else
    ``conf/train.yaml``'s pattern, resolved against the composed config (``paths.output_dir``, Hydra's ``${now:}``)
    and made absolute as Hydra makes its output dir."""
    typed = [o.split("=", 1)[1] for o in overrides if override_key(o) == RUN_DIR_KEY and "=" in o]
    if typed:
        pattern = typed[-1]
    else:  # the pattern as written (reading the key would resolve it against train.yaml alone)
        pattern = str(OmegaConf.to_container(OmegaConf.load(conf_dir() / "train.yaml").hydra.run)["dir"])
    whole = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(whole):
        whole.hydra.run = {"dir": pattern}
    return Path(str(whole.hydra.run.dir)).absolute()


def history_frame(record: Mapping[str, Any]) -> pd.DataFrame:
    """A run record's ``history`` (columns of per-epoch values, ``run/history.py``) as a DataFrame, one row per
    epoch; missing values (not finite, or not logged that epoch) are NaN."""
    import pandas as pd

    frame = pd.DataFrame(record.get("history") or {"epoch": [], "step": []})
    return frame.astype({key: "float64" for key in frame.columns if key not in ("epoch", "step")})


@dataclass
class RunResult:
    """What :func:`run` returns: the run's final ``metrics`` (``test/acc``, ``val/best_acc`` ...), its ``run_dir``, the
    per-epoch ``history`` and the ``config`` it trained; ``status`` and the whole ``record`` (``metrics.json``)."""

    metrics: dict[str, float | None]
    run_dir: Path
    history: pd.DataFrame
    config: DictConfig
    status: str
    record: dict[str, Any]

    def load(self, ckpt: str = "best") -> LoadedRun:
        """The trained model back from the run dir (:func:`load`)."""
        return load(self.run_dir, ckpt=ckpt)


@dataclass
class LoadedRun:
    """What :func:`load` returns: the run's ``config``, its ``model`` (the task, a LightningModule, with the
    checkpoint's weights, in eval mode; ``model.network`` is the bare network), the ``checkpoint`` read, the
    ``history`` and the final ``metrics`` it recorded."""

    run_dir: Path
    config: DictConfig
    model: Any
    checkpoint: Path
    history: pd.DataFrame
    metrics: dict[str, float | None]

    @property
    def network(self) -> Any:
        """The bare network inside the task (what ``model(x)`` runs)."""
        return self.model.network


def run(overrides: Sequence[str] | str = (), /, *, progress: bool | None = None, **keywords: Any) -> RunResult:
    """Train one configuration as ``python -m experiments.train <overrides>`` would, and return its result.

    ``run(["model=fcn", "activation=leaky_relu"])``, ``run(model="fcn", activation="leaky_relu")`` and
    ``run(**{"optimizer.lr": 0.01})`` compose the same way (keywords after the list). ``progress``: the per-batch
    progress bar; None (default) turns it off unless the overrides ask for one (``trainer.enable_progress_bar=...``
    or a progress-bar callback), True leaves the config's. Bad input raises :class:`~experiments.errors.ConfigError`
    with the CLI's sentence; a diverged run :class:`~experiments.errors.TrainingDiverged`; an interrupt (the kernel's
    stop button) :class:`~experiments.errors.RunInterrupted`, after the checkpoint to resume from is written.
    """
    from experiments.train import train

    cfg = configure(overrides, **keywords)
    typed = overrides_of(overrides, keywords)
    if progress is False or (progress is None and not _asks_for_progress(cfg, typed)):
        cfg.trainer.enable_progress_bar = False
    run_dir = Path(cfg.run_dir)
    with _process_state_kept(run_dir):
        _write_hydra_record(cfg, run_dir)
        record = train(cfg)
    return RunResult(metrics=dict(record.get("metrics") or {}), run_dir=run_dir, history=history_frame(record),
                     config=cfg, status=str(record.get("status")), record=dict(record))


def load(run_dir: str | Path, ckpt: str = "best") -> LoadedRun:
    """A run dir back in Python: its config, its task with the ``ckpt`` weights (``best``, ``last``, ``averaged`` or a
    path, as ``python -m experiments.evaluate`` takes them; read weights-only and checked against the network by
    :mod:`experiments.run.checkpoints`) in eval mode, and its history and metrics from ``metrics.json``."""
    from experiments.evaluate import _task_with_weights, load_run_config, resolve_checkpoint

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)  # a bad run dir: ConfigError, the evaluate CLI's sentence
    path = resolve_checkpoint(run_dir, ckpt)
    task = _task_with_weights(cfg, path).eval()
    record = RunDir(run_dir).read_record() or {}
    return LoadedRun(run_dir=run_dir, config=cfg, model=task, checkpoint=path, history=history_frame(record),
                     metrics=dict(record.get("metrics") or {}))


def _asks_for_progress(cfg: DictConfig, typed: Sequence[str]) -> bool:
    """Whether the overrides say anything of the progress bar (a bar callback, or the trainer's switch)."""
    callbacks = str(OmegaConf.select(cfg, "hydra.runtime.choices.callbacks", default="") or "")
    return "progress" in callbacks or any(override_key(o) == "trainer.enable_progress_bar" for o in typed)


def _write_hydra_record(cfg: DictConfig, run_dir: Path) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml`` as Hydra writes them before a CLI job (the config without its
    ``hydra`` node, unresolved; the task overrides), unless a resumed run's record is there already."""
    run = RunDir(run_dir)
    if run.has_started():  # resume=true: the run's own record stays, as resume.restore_hydra_record keeps it
        return
    run.hydra_dir.mkdir(parents=True, exist_ok=True)
    body = OmegaConf.to_container(cfg, resolve=False)
    body.pop("hydra", None)
    run.hydra_config.write_text(OmegaConf.to_yaml(OmegaConf.create(body)))
    run.hydra_overrides.write_text(OmegaConf.to_yaml(OmegaConf.create(list(cfg.hydra.overrides.task))))


@contextmanager
def _process_state_kept(run_dir: Path) -> Iterator[None]:
    """Put back what a run changes in the process and a kernel keeps: the SIGINT/SIGTERM handlers (the graceful stop
    installs its own and, in a CLI that exits, never restores them) and the root logger; meanwhile the log goes to
    ``<run dir>/train.log`` at INFO, as Hydra's job logging sends it under the CLI."""
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    root = logging.getLogger()
    level = root.level
    run_dir.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(run_dir / "train.log")
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root.addHandler(file)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(file)
        file.close()
        root.setLevel(level)
        for signum, handler in handlers.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)
