"""``hydra/sweeper=optuna`` end to end: real ``-m`` searches through the project's sweeper plugin, in a subprocess.

Fast: a search whose pruner must prune (a threshold no accuracy reaches), then the same command again after a
"killed" trial was left RUNNING, continuing the study to its total; bad input refused before any trial; the report
read back. Slow: the median pruner stops a deliberately hopeless learning rate; several seeds per trial.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from experiments import report  # noqa: E402
from experiments.search.storage import open_storage  # noqa: E402
from tests.sweep_cli import NO_DIAGNOSTICS, SWEEP_TINY, explain, run_sweep  # noqa: E402

#: the experiment's space with the tiny budget (its own width stays in the space), no loggers
BASE = [o for o in SWEEP_TINY if not o.startswith("model.width=")] + [NO_DIAGNOSTICS, "logger=[]",
                                                                       "experiment=optuna_lr_wd_width"]


def search(tmp_path: Path, *overrides: str) -> tuple:
    """Run the search with its study under tmp_path; (result, sweep dir, study URL)."""
    sweep = tmp_path / f"sweep{len(list(tmp_path.glob('sweep*')))}"
    result = run_sweep(sweep, f"paths.output_dir={tmp_path}", *overrides, base=BASE)
    return result, sweep, f"sqlite:///{tmp_path / 'optuna' / 'lr_wd_width.db'}"


def load(url: str):
    return optuna.load_study(study_name="lr_wd_width", storage=open_storage(url))


def test_a_killed_trial_comes_back_pruned_trials_are_pruned_and_the_report_explains_the_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna' / 'lr_wd_width.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="lr_wd_width", direction="maximize")
    killed = study.ask()  # a sweep killed mid-trial leaves its trial RUNNING
    killed_lr = killed.suggest_float("optimizer.lr", 0.0003, 0.03, log=True)

    result, sweep, _ = search(tmp_path, "hydra.sweeper.n_trials=2", "hydra/sweeper/pruner=threshold",
                              "hydra.sweeper.pruner.lower=1.01")  # no accuracy reaches it: every trial is pruned
    assert result.returncode == 0, explain(result)  # pruned is not failed
    assert "were left running by a stopped sweep" in result.stdout and "0 of 2 trials done, 2 to go" in result.stdout
    trials = load(url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.PRUNED, TrialState.PRUNED]
    assert trials[1].params["optimizer.lr"] == pytest.approx(killed_lr)  # the killed trial's parameters, again
    assert trials[1].user_attrs["requeued_from"] == killed.number
    for trial in trials[1:]:
        assert list(trial.intermediate_values) == [1]  # reported after epoch 1, stopped there (warm-up: 1 epoch)
        record = json.loads((sweep / str(trial.number) / "metrics.json").read_text())  # job dir = trial number
        assert record["status"] == "pruned" and record["search"]["pruned_at_epoch"] == 1
        assert record["search"]["reported"]["1"] == pytest.approx(trial.intermediate_values[1])
    assert "pruned at epoch 1" in result.stdout
    assert report.main([str(sweep)]) == 1  # no completed run, but the search section is written
    text = (sweep / "report.md").read_text()
    assert "## Search" in text and "0 completed, 2 pruned, 1 failed trials" in text
    assert (sweep / "search_intermediate.png").stat().st_size > 1000  # each trial's curve, stopped at epoch 1


@pytest.mark.slow  # ~1 min: three invocations of the same search
def test_the_same_command_continues_the_study_to_its_total_then_runs_nothing(tmp_path: Path) -> None:
    result, _, url = search(tmp_path, "hydra.sweeper.n_trials=2", "hydra/sweeper/pruner=threshold",
                            "hydra.sweeper.pruner.lower=1.01")
    assert result.returncode == 0, explain(result)
    result, sweep2, _ = search(tmp_path, "hydra.sweeper.n_trials=3", "hydra/sweeper/pruner=none")
    assert result.returncode == 0, explain(result)
    assert "2 of 3 trials done, 1 to go" in result.stdout  # a total, not 3 more
    trials = load(url).trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED, TrialState.COMPLETE]
    assert sorted(p.name for p in sweep2.iterdir() if p.name.isdigit()) == ["2"]

    assert report.main([str(sweep2)]) == 0
    text = (sweep2 / "report.md").read_text()
    assert "## Search" in text and "1 completed, 2 pruned, 0 failed trials" in text
    assert f"**Best trial 2**: `val/acc` = {trials[2].value:.4g}" in text
    assert f"optimizer.lr={trials[2].params['optimizer.lr']}" in text  # the config that reproduces it
    assert (sweep2 / "search_history.png").stat().st_size > 1000

    result, _, _ = search(tmp_path, "hydra.sweeper.n_trials=3")  # at its total: nothing to run, not a failure
    assert result.returncode == 0, explain(result)
    assert "3 of 3 trials done, 0 to go" in result.stdout and len(load(url).trials) == 3


#: by default the CLI's exit path once (a search key the config lacks); the sampler, pruner and direction refusals
#: are tested in-process in test_search.py, and through the CLI with -m slow
SLOW_CLI = pytest.mark.slow


@pytest.mark.parametrize(("override", "words"), [
    pytest.param("hydra.sweeper.sampler.name=tpx", "hydra.sweeper.sampler.name=tpx is invalid", marks=SLOW_CLI),
    pytest.param("hydra/sweeper/pruner=bogus", "Available options in 'hydra/sweeper/pruner'", marks=SLOW_CLI),
    ("optimizer.lrr=interval(0.1,0.2)", "optimizer.lrr=interval(0.1,0.2) is invalid: the config has no such key"),
    pytest.param("hydra.sweeper.direction=minimize", "hydra.sweeper.direction=minimize is invalid", marks=SLOW_CLI),
])
def test_bad_input_is_one_sentence_and_exit_2_before_any_trial(tmp_path: Path, override: str, words: str) -> None:
    result, sweep, url = search(tmp_path, override)
    assert result.returncode == 2, explain(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert not sweep.exists() and not (tmp_path / "optuna").exists()  # nothing started, no study created


@pytest.mark.slow  # ~1 min: six trials of three epochs on more data
def test_the_median_pruner_stops_a_hopeless_learning_rate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna' / 'lr_wd_width.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="lr_wd_width", direction="maximize")
    good = {"optimizer.lr": 0.01, "optimizer.weight_decay": 1e-4, "model.width": 8}
    for params in (good, good, good, {**good, "optimizer.lr": 1e-9}):  # the last one cannot learn
        study.enqueue_trial(params)
    result, sweep, _ = search(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner.n_startup_trials=3",
                              "hydra.sweeper.pruner.n_min_trials=3", "data.train_size=512", "trainer.max_epochs=3",
                              "optimizer.lr=tag(log, interval(1e-10, 0.1))")
    assert result.returncode == 0, explain(result)
    trials = load(url).trials
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE] * 3
    assert trials[3].state == TrialState.PRUNED and max(trials[3].intermediate_values) < 3  # stopped before the end


@pytest.mark.slow  # two trials x two seeds
def test_several_seeds_report_at_their_own_steps_and_the_objective_is_their_mean(tmp_path: Path) -> None:
    result, sweep, url = search(tmp_path, "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds=[0,1]",
                                "hydra/sweeper/pruner=none")
    assert result.returncode == 0, explain(result)
    for trial in load(url).trials:
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4]  # seed 0: epochs 1-2, seed 1: steps 3-4
        values = [json.loads((sweep / str(trial.number) / f"seed_{s}" / "metrics.json").read_text())["metrics"]
                  ["val/acc"] for s in (0, 1)]
        assert trial.value == pytest.approx(sum(values) / 2)
