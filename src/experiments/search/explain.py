"""What a finished (or running) study says: the best trial, how the search went, which parameters mattered.

Figures come from ``optuna.visualization.matplotlib`` (PNG files, no browser): the optimisation history, the
parameter importances, a parallel-coordinate plot of every trial and each trial's reported curve (pruned trials
stop early there). Importances are fANOVA's (Hutter et al. 2014: the share of the objective's variance each
parameter explains, from a random forest fitted to the completed trials; needs scikit-learn, in the sweeps extra);
with fewer than :data:`MIN_TRIALS_FOR_IMPORTANCE` completed trials there is no forest worth fitting, and the report
says so instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: completed trials below which importances are not computed
MIN_TRIALS_FOR_IMPORTANCE = 3
#: figure name -> (Optuna's matplotlib function, whether it needs completed trials)
FIGURES = {
    "search_history": ("plot_optimization_history", True),
    "search_importances": ("plot_param_importances", True),
    "search_parallel": ("plot_parallel_coordinate", True),
    "search_intermediate": ("plot_intermediate_values", False),
}


@dataclass
class Explanation:
    """The study in numbers (what the report prints) and the figures written."""

    study_name: str
    metric: str
    direction: str
    counts: dict[str, int]
    best: dict[str, Any] | None  # number, value, params, run_dirs
    ranked: list[dict[str, Any]] = field(default_factory=list)  # completed trials, best first
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str | None = None
    figures: list[Path] = field(default_factory=list)


def explain(study: Any, metric: str, out_dir: Path | None = None) -> Explanation:
    """Numbers of ``study``; with ``out_dir`` its figures too."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(1 for t in trials if t.state == state)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                            TrialState.WAITING)}
    direction = study.direction.name.lower()
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    complete.sort(key=lambda t: t.value, reverse=direction == "maximize")
    ranked = [{"number": t.number, "value": t.value, "params": dict(t.params),
               "run_dirs": list(t.user_attrs.get("run_dirs", []))} for t in complete]
    result = Explanation(study.study_name, metric, direction, counts, ranked[0] if ranked else None, ranked)
    if len(complete) >= MIN_TRIALS_FOR_IMPORTANCE:
        result.importances, result.importance_note = _importances(study)
    else:
        result.importance_note = (f"importances need at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials "
                                  f"({len(complete)} so far)")
    if out_dir is not None:
        result.figures = write_figures(study, Path(out_dir), metric, bool(complete), bool(result.importances))
    return result


def _importances(study: Any) -> tuple[dict[str, float], str | None]:
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ImportError, ValueError, RuntimeError) as err:  # e.g. a parameter that never varied
        return {}, f"importances could not be computed ({str(err).splitlines()[0]})"
    return {k: float(v) for k, v in values.items()}, None


def write_figures(study: Any, out_dir: Path, metric: str, completed: bool, importances: bool) -> list[Path]:
    """The PNG figures of the study into ``out_dir``; those that need completed trials only when there are some."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (function, needs_complete) in FIGURES.items():
        if needs_complete and not completed or name == "search_importances" and not importances:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
            try:
                kwargs = {"target_name": metric} if name != "search_intermediate" else {}
                if name == "search_importances":
                    kwargs["evaluator"] = __import__("optuna").importance.FanovaImportanceEvaluator(seed=0)
                axes = getattr(ovm, function)(study, **kwargs)
            except (ValueError, RuntimeError, ImportError):
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
