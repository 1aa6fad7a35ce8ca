"""The study's storage: one SQLite file per study, outside any timestamped sweep dir, so the same command resumes.

The default (conf/hydra/sweeper/optuna.yaml) is ``sqlite:///${paths.output_dir}/optuna/<study_name>.db``. Every
invocation opens the study, repairs what a killed invocation left behind, and then asks only for the trials still
missing from ``n_trials`` *in total*. The trial processes (the pruning callback) and ``optuna-dashboard`` open the
same file; SQLite serialises their writes, and a long busy timeout keeps parallel trials from failing on a lock.

A **RUNNING trial at the start of an invocation** belonged to a process that was killed (one sweep runs a study at
a time: two invocations of one study at once are not supported). It is marked FAIL, tagged ``requeued``, and its
parameters are enqueued, so the sampler proposes them again as a new trial and the total still counts it once.

``<sweep dir>/search.json`` ties a sweep dir to its study (storage, study name, metric, direction, seeds, and the
run dirs of each trial it launched), so ``python -m experiments.report <sweep dir>`` can explain the study.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the sweep dir's pointer to its study (written by the sweeper, read by the report)
SEARCH_RECORD = "search.json"
#: the best trial in Hydra's optuna-sweeper format, kept for readers of that plugin's output
RESULTS_FILE = "optimization_results.yaml"
#: seconds a process waits for the SQLite lock before giving up
SQLITE_TIMEOUT_S = 120
#: study attribute: the numbers of trials whose parameters were proposed again because their process died
REQUEUED = "requeued"
#: user attribute prefix the trial callback writes when a seed of the trial was pruned
PRUNED_MARK = "pruned_seed_"
#: where the sweeper puts the trial's pruning callback (search.pruning.TrialReporter) in a trial's config
CALLBACK_KEY = "callbacks.optuna_trial"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, None for another database."""
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) else None


def open_storage(url: str) -> Any:
    """Optuna's RDB storage of ``url``; for SQLite its directory is created and the lock wait is long."""
    import optuna

    path = sqlite_path(url)
    if path is None:
        return optuna.storages.get_storage(url)
    if str(path) not in ("", ":memory:"):
        path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})


def repair_running(study: Any) -> list[int]:
    """Mark the trials a killed invocation left RUNNING as FAIL and enqueue their parameters; their numbers."""
    from optuna.trial import TrialState

    repaired = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        repaired.append(trial.number)
    if repaired:  # a study attribute: Optuna has no public way to tag a trial it did not hand out here
        study.set_user_attr(REQUEUED, sorted({*requeued(study), *repaired}))
    return repaired


def requeued(study: Any) -> list[int]:
    """Numbers of the failed trials whose parameters were proposed again (they do not count towards the total)."""
    return [int(n) for n in study.user_attrs.get(REQUEUED, [])]


def trials_done(study: Any) -> int:
    """Trials that count towards ``n_trials``: completed, pruned, and failed ones that were not proposed again."""
    from optuna.trial import TrialState

    again = set(requeued(study))
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=finished) if t.number not in again)


def pruned_marks(trial: Any) -> dict[str, Any]:
    """The ``pruned_seed_<i>`` marks the trial's runs left (empty: no seed was pruned)."""
    return {k: v for k, v in trial.user_attrs.items() if k.startswith(PRUNED_MARK)}


def write_record(sweep_dir: Path, payload: dict[str, Any]) -> Path:
    """Write ``search.json`` atomically (a report may read it while the sweep goes on)."""
    path = Path(sweep_dir) / SEARCH_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def read_record(sweep_dir: Path) -> dict[str, Any] | None:
    """``search.json`` of a sweep dir, None when it is not a search (or the file is unreadable)."""
    try:
        data = json.loads((Path(sweep_dir) / SEARCH_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_study(record: dict[str, Any]) -> Any:
    """The study a ``search.json`` points at (read only by its callers: report, retest)."""
    import optuna

    return optuna.load_study(study_name=str(record["study_name"]), storage=open_storage(str(record["storage"])))


def trial_overrides(overrides: Sequence[str]) -> list[str]:
    """A trial run's overrides without what only the search needs (its reporting callback, seed, packing)."""

    dropped = ("seed", "trainer.packed_jobs", "resume")
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in dropped and not key.startswith(CALLBACK_KEY):
            kept.append(override)
    return kept
