"""Find run directories under a sweep and load what training left in them.

Only files are read (``metrics.json`` and Hydra's ``.hydra/*.yaml``); nothing here imports torch or
lightning, so reporting on a finished sweep starts in a fraction of a second.

The fields are those :mod:`experiments.run.schema` declares (the one description of ``metrics.json``), read
through :func:`~experiments.run.schema.read`, which refuses a name the schema lacks. Schema tolerance is
deliberate: ``metrics.json`` files from older versions of the training code may lack any field, so every field
falls back to an empty/None value instead of raising.  A run that cannot be interpreted is classified as
*incomplete* with a reason rather than aborting the whole report.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from experiments.run.layout import HYDRA_CONFIG as CONFIG_FILE
from experiments.run.layout import HYDRA_DIR
from experiments.run.layout import HYDRA_OVERRIDES as OVERRIDES_FILE
from experiments.run.layout import METRICS as METRICS_FILE
from experiments.run.schema import read

#: a run as the report sees it: completed, failed, pruned by a search (not a failure, left out of the arms'
#: statistics like an incomplete run), or incomplete (running, interrupted, unreadable)
Status = Literal["completed", "failed", "pruned", "incomplete"]
COMPLETED: Status = "completed"
FAILED: Status = "failed"
PRUNED: Status = "pruned"
INCOMPLETE: Status = "incomplete"

#: Override keys that identify the random seed; runs differing only in these are replicates.
SEED_KEYS = frozenset({"seed"})


@dataclass
class GradientFlow:
    """Per-layer gradient L2 norms at initialisation, in depth order (input side first)."""

    layers: list[str]
    grad_norm: list[float | None]


@dataclass
class RunResult:
    """Everything the report needs from one run directory (what its RunRecord wrote), normalised to plain types."""

    path: Path
    status: Status
    error: str | None = None
    task: str | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    #: False when neither metrics.json nor .hydra/overrides.yaml told us the overrides; such runs must
    #: not take part in deciding which overrides are sweep constants (their empty list would veto all).
    overrides_known: bool = False
    seed: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: float | None = None
    wall_time_s: float | None = None
    vanishing_ratio: float | None = None
    flops: float | None = None  # per sample, from the model card diagnostics
    receptive_field: float | None = None  # of the last feature map, in input pixels
    history: dict[str, list[float | None]] = field(default_factory=dict)
    gradient_flow: GradientFlow | None = None
    tags: list[str] = field(default_factory=list)
    debug: str | None = None  # what made it a debug run (debug=fdr, trainer.fast_dev_run...): left out by default
    #: test images behind the test metrics (``test_count``, else the confusion matrix's total): a run's own noise
    test_count: int | None = None
    #: classes of the task (``class_names``, else the confusion matrix's size): chance accuracy is 1/num_classes
    num_classes: int | None = None

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED


# --------------------------------------------------------------------------------------------- helpers


def parse_override(override: str) -> tuple[str, str]:
    """Split a Hydra override string into ``(key, value)``.

    Hydra's ``+key=v``, ``++key=v`` and ``~key`` prefixes are stripped from the key so that ``+seed=1``
    and ``seed=1`` are recognised as the same setting.  Strings without ``=`` get an empty value.
    """
    key, _, value = override.partition("=")
    return key.strip().lstrip("+~"), value.strip()


def is_seed_override(override: str) -> bool:
    """True for ``seed=...`` (with any Hydra prefix): seeds are replicates, never a grouping factor."""
    return parse_override(override)[0] in SEED_KEYS


def _natural_key(text: str) -> list[Any]:
    """Sort key that orders ``2`` before ``10`` so Hydra job dirs come back in launch order."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _as_float(value: Any) -> float | None:
    """Numbers (not bools) as float, everything else None: metrics.json may hold anything."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _as_int(value: Any) -> int | None:
    number = _as_float(value)
    if number is None or not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def _as_str_list(value: Any) -> list[str] | None:
    if not isinstance(value, list | tuple):
        return None
    return [str(item) for item in value]


def _one_line(text: Any) -> str:
    """Collapse an error message onto one line so it fits a Markdown bullet."""
    return " ".join(str(text).split())


def _read_yaml(path: Path) -> Any:
    """Parse a YAML file, or None when it is absent/unreadable (a crashed job may leave partial files)."""
    if not path.is_file():
        return None
    try:
        import yaml  # PyYAML ships with omegaconf/hydra; imported here to keep module import cheap

        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except Exception:  # any parse problem just means "unknown"
        return None


# ------------------------------------------------------------------------------------------- discovery


def is_run_dir(path: Path) -> bool:
    """A run dir holds ``metrics.json``, or at least Hydra's ``.hydra/`` (a job that crashed hard)."""
    return (path / METRICS_FILE).is_file() or (path / HYDRA_DIR).is_dir()


def find_run_dirs(root: Path) -> list[Path]:
    """All run directories at or below ``root``, in natural (sweep launch) order.

    The walk does not descend into a run directory once found: runs do not nest, and skipping their
    checkpoint/TensorBoard subtrees keeps discovery fast.  Hidden directories (``.hydra``, ``.git``)
    are never entered.
    """
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    for current, dirnames, _files in os.walk(root):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=_natural_key)
        keep = []
        for name in dirnames:
            child = Path(current) / name
            if is_run_dir(child):
                found.append(child)
            else:
                keep.append(name)
        dirnames[:] = keep
    found.sort(key=lambda p: _natural_key(p.relative_to(root).as_posix()))
    return found


# --------------------------------------------------------------------------------------------- loading


def _load_overrides(path: Path, data: dict[str, Any]) -> list[str] | None:
    overrides = _as_str_list(read(data, "overrides"))
    if overrides is not None:
        return overrides
    return _as_str_list(_read_yaml(path / HYDRA_DIR / OVERRIDES_FILE))


def _load_seed(path: Path, data: dict[str, Any], overrides: Sequence[str]) -> int | None:
    seed = _as_int(read(data, "seed"))
    if seed is not None:
        return seed
    for override in overrides:
        if is_seed_override(override):
            seed = _as_int(_parse_number(parse_override(override)[1]))
            if seed is not None:
                return seed
    config = _read_yaml(path / HYDRA_DIR / CONFIG_FILE)
    if isinstance(config, dict):
        return _as_int(config.get("seed"))
    return None


def _parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _load_history(raw: Any) -> dict[str, list[float | None]]:
    if not isinstance(raw, dict):
        return {}
    history: dict[str, list[float | None]] = {}
    for key, values in raw.items():
        if isinstance(values, list):
            history[str(key)] = [_as_float(v) for v in values]
    return history


def _load_gradient_flow(raw: Any) -> GradientFlow | None:
    if not isinstance(raw, dict):
        return None
    norms = raw.get("grad_norm")
    if not isinstance(norms, list) or not norms:
        return None
    layers = _as_str_list(raw.get("layers")) or []
    return GradientFlow(layers=layers, grad_norm=[_as_float(v) for v in norms])


def _confusion(data: dict[str, Any]) -> list[list[Any]] | None:
    matrix = read(data, "confusion_matrix")
    if isinstance(matrix, list) and matrix and all(isinstance(row, list) for row in matrix):
        return matrix
    return None


def _load_test_count(data: dict[str, Any]) -> int | None:
    """The recorded ``test_count``; for runs from before it, the confusion matrix's total (the same number)."""
    count = _as_int(read(data, "test_count"))
    if count is not None:
        return count if count > 0 else None
    matrix = _confusion(data)
    cells = [_as_int(cell) for row in matrix or [] for cell in row]
    if not cells or any(cell is None for cell in cells):
        return None
    total = sum(cells)  # type: ignore[arg-type]
    return total if total > 0 else None


def _load_num_classes(data: dict[str, Any]) -> int | None:
    names = _as_str_list(read(data, "class_names"))
    if names:
        return len(names)
    matrix = _confusion(data)
    return len(matrix) if matrix else None


def _classify(data: dict[str, Any], metrics: dict[str, float]) -> tuple[Status, str | None]:
    status = read(data, "status")
    if status == "completed":
        return COMPLETED, None
    if status == "failed":
        error = read(data, "error")
        return FAILED, _one_line(error) if error else "(no error message recorded)"
    if status == "pruned":
        error = read(data, "error")
        return PRUNED, _one_line(error) if error else "pruned by the search"
    if status == "running":
        return INCOMPLETE, "status is 'running': the job ended without finalising metrics.json"
    if status == "interrupted":
        return INCOMPLETE, "interrupted (SIGINT/SIGTERM); continue it with resume=true"
    if status is None:
        # Older metrics.json files had no status; final metrics are the evidence the run finished.
        if metrics:
            return COMPLETED, None
        return INCOMPLETE, "metrics.json has neither a status nor final metrics"
    return INCOMPLETE, f"unknown status {status!r} in metrics.json"


def load_run(path: Path) -> RunResult:
    """Load one run directory; never raises for bad content, it classifies the run instead."""
    path = Path(path)
    metrics_path = path / METRICS_FILE
    data: dict[str, Any] = {}
    parsed = False
    reason: str | None = None
    if not metrics_path.is_file():
        reason = "no metrics.json (the job crashed or is still running)"
    else:
        try:
            loaded = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            reason = f"unreadable metrics.json: {_one_line(exc)}"
        else:
            if isinstance(loaded, dict):
                data, parsed = loaded, True
            else:
                reason = "metrics.json is not a JSON object"

    raw_metrics = read(data, "metrics")
    metrics: dict[str, float] = {}
    if isinstance(raw_metrics, dict):
        for key, value in raw_metrics.items():
            number = _as_float(value)
            if number is not None:
                metrics[str(key)] = number
    status: Status = INCOMPLETE
    if parsed:
        status, reason = _classify(data, metrics)

    overrides = _load_overrides(path, data)
    choices = read(data, "choices")
    task = read(data, "task")
    return RunResult(
        path=path,
        status=status,
        error=reason,
        task=str(task) if task is not None else None,
        choices=dict(choices) if isinstance(choices, dict) else {},
        overrides=overrides or [],
        overrides_known=overrides is not None,
        seed=_load_seed(path, data, overrides or []),
        metrics=metrics,
        params=_as_float(read(data, "params")),
        wall_time_s=_as_float(read(data, "wall_time_s")),
        vanishing_ratio=_as_float(read(data, "vanishing_ratio")),
        flops=_as_float(read(data, "flops")),
        receptive_field=_as_float(read(data, "receptive_field")),
        history=_load_history(read(data, "history")),
        gradient_flow=_load_gradient_flow(read(data, "gradient_flow")),
        tags=_as_str_list(read(data, "tags")) or [],
        debug=str(read(data, "debug")) if read(data, "debug") else None,
        test_count=_load_test_count(data),
        num_classes=_load_num_classes(data),
    )


def collect_runs(roots: Iterable[Path]) -> list[RunResult]:
    """Load every run under every root, in root order then sweep order.

    The same directory reached twice (overlapping roots, e.g. ``outputs/multirun`` and one of its
    sweeps) is loaded once, so replicates are never double-counted.
    """
    seen: set[Path] = set()
    runs: list[RunResult] = []
    for root in roots:
        for run_dir in find_run_dirs(Path(root)):
            resolved = run_dir.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            runs.append(load_run(run_dir))
    return runs


def select_runs(runs: Sequence[RunResult], tags: Sequence[str] = (), include_debug: bool = False
                ) -> tuple[list[RunResult], int]:
    """The runs a report covers: those carrying every tag in ``tags`` (``--tag``), debug runs (``debug=...``) only
    with ``include_debug``, since a one-batch or overfitting run would skew an arm's mean. Returns the selected
    runs and how many debug runs were left out."""
    tagged = [run for run in runs if set(tags) <= set(run.tags)]
    selected = [run for run in tagged if include_debug or run.debug is None]
    return selected, len(tagged) - len(selected)
