"""``hydra/sweeper=seeds``: the loop that adds seeds until comparisons resolve, in process with a fake launcher.

The fake launcher writes each job's ``metrics.json`` as a training run would (status, seed, overrides, metric) with
values chosen per arm and seed, so which seeds the sweeper asks for at each look, when it stops a comparison, and
what ``seed_sweep.json`` says can be checked exactly. The config as Hydra composes it is checked in process; one
real ``-m`` sweep end to end is marked slow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from experiments.config import conf_dir
from experiments.reporting.planning import SEQUENTIAL_REFERENCE, look_sizes
from hydra_plugins.experiments_seed_sweeper.sweeper import RECORD_FILE, SeedSweeper


class FakeLoader:
    """Composes nothing; remembers what it was asked to compose (the sweeper validates every batch)."""

    def __init__(self) -> None:
        self.composed: list[list[str]] = []

    def load_sweep_config(self, master_config: Any, sweep_overrides: Sequence[str]) -> Any:
        self.composed.append(list(sweep_overrides))
        return OmegaConf.create({})


class FakeLauncher:
    """Writes ``<sweep>/<job>/metrics.json`` with ``value(overrides, seed)`` as test/acc (None: the job failed)."""

    def __init__(self, sweep: Path, value: Callable[[dict[str, str], int], float | None]) -> None:
        self.sweep, self.value = sweep, value
        self.batches: list[list[list[str]]] = []

    def launch(self, batch: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        self.batches.append([list(job) for job in batch])
        results = []
        for number, overrides in enumerate(batch, start=initial_job_idx):
            settings = dict(o.split("=", 1) for o in overrides)
            seed = int(settings["seed"])
            value = self.value(settings, seed)
            job = self.sweep / str(number)
            job.mkdir(parents=True)
            record = {"status": "completed" if value is not None else "failed", "seed": seed,
                      "overrides": list(overrides), "task": "classification",
                      "metrics": {"test/acc": value} if value is not None else {},
                      "error": None if value is not None else "RuntimeError: boom"}
            (job / "metrics.json").write_text(json.dumps(record))
            results.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=value))
        return results


def sweeper_for(tmp_path: Path, value: Callable[[dict[str, str], int], float | None], **options: Any
                ) -> tuple[SeedSweeper, FakeLauncher, FakeLoader]:
    options = {"metric": "test/acc", **options}
    sweeper = SeedSweeper(**options)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    loader = FakeLoader()
    sweeper.hydra_context = SimpleNamespace(config_loader=loader)  # type: ignore[assignment]
    sweeper.launcher = FakeLauncher(tmp_path / "sweep", value)
    return sweeper, sweeper.launcher, loader


#: per seed, the noise all arms share (the seed's luck, which pairing cancels) and each arm's own
SHARED = [0.03, -0.02, 0.01, -0.04, 0.02, 0.0, 0.01, -0.01]
OWN = [0.004, -0.003, 0.001, -0.002, 0.003, -0.004, 0.002, 0.0]


def accuracy(settings: dict[str, str], seed: int) -> float:
    """relu 0.80; sigmoid 0.30 (resolved at once); tanh 0.80: no difference to find."""
    base = {"relu": 0.80, "sigmoid": 0.30, "tanh": 0.80}[settings["activation"]]
    own = 0.0 if settings["activation"] == "relu" else OWN[seed]
    return base + SHARED[seed] + own


def test_seeds_are_added_to_open_comparisons_only_until_the_cap(tmp_path: Path, capsys: pytest.CaptureFixture
                                                                  ) -> None:
    sweeper, launcher, loader = sweeper_for(tmp_path, accuracy, start=2, step=1, max_seeds=4,
                                            params={"activation": "relu,sigmoid,tanh"})
    sweeper.sweep(["model.width=4"])
    jobs = [[(dict(o.split("=", 1) for o in job)["activation"], dict(o.split("=", 1) for o in job)["seed"])
             for job in batch] for batch in launcher.batches]
    # look 1: every arm on seeds 0, 1; sigmoid resolves (−0.5 on both seeds); then relu and tanh only
    assert jobs == [[("relu", "0"), ("relu", "1"), ("sigmoid", "0"), ("sigmoid", "1"), ("tanh", "0"), ("tanh", "1")],
                    [("relu", "2"), ("tanh", "2")], [("relu", "3"), ("tanh", "3")]]
    assert all("model.width=4" in job for batch in launcher.batches for job in batch)  # the grid's fixed overrides
    assert len(loader.composed) == 1 + 6 + 2 + 2  # the metric's sample, then every job checked before its launch
    record = json.loads((tmp_path / "sweep" / RECORD_FILE).read_text())
    assert record["finished"] and record["baseline"] == "activation=relu"
    assert record["reference"] == SEQUENTIAL_REFERENCE
    assert record["looks"] == look_sizes(2, 1, 4) == [2, 3, 4]
    assert record["level"] == pytest.approx(0.05 / (2 * 3)) and record["confidence"] == pytest.approx(1 - 0.05 / 6)
    sigmoid, tanh = record["arms"]["activation=sigmoid"], record["arms"]["activation=tanh"]
    assert (sigmoid["status"], sigmoid["resolved_at_pairs"], sigmoid["seeds"]) == ("resolved", 2, [0, 1])
    # −0.5 + (0.004, −0.003): t = 143 on 1 degree of freedom, p = 0.0045 < 0.05/6; a 99.2 % interval below 0
    assert sigmoid["looks"][0]["mean"] == pytest.approx(-0.4995) and sigmoid["looks"][0]["p"] < record["level"]
    assert sigmoid["looks"][0]["high"] < 0
    assert (tanh["status"], tanh["resolved_at_pairs"], tanh["seeds"]) == ("cap", None, [0, 1, 2, 3])
    assert [look["pairs"] for look in tanh["looks"]] == [2, 3, 4]
    assert all(look["low"] < 0 < look["high"] and look["p"] > record["level"] for look in tanh["looks"])
    assert record["arms"]["activation=relu"] == {"overrides": ["activation=relu"], "seeds": [0, 1, 2, 3],
                                                 "role": "baseline"}
    out = capsys.readouterr().out
    assert "Bonferroni group-sequential boundary, Jennison & Turnbull 2000" in out
    assert "activation=sigmoid − activation=relu: resolved at 2 pairs" in out
    assert "activation=tanh − activation=relu: not resolved at the cap (4 seeds, 4 pairs)" in out
    assert "--baseline activation=relu" in out


def test_the_baseline_is_named_as_a_mapping_or_as_the_report_names_it(tmp_path: Path) -> None:
    def value(settings: dict[str, str], seed: int) -> float:
        return {"relu": 0.5, "sigmoid": 0.9, "tanh": 0.9 + OWN[seed]}[settings["activation"]] + SHARED[seed]

    for spec in ({"activation": "sigmoid"}, "activation=sigmoid"):
        where = tmp_path / str(type(spec).__name__)
        sweeper, launcher, _ = sweeper_for(where, value, start=2, step=2, max_seeds=3, baseline=spec,
                                           params={"activation": "relu,sigmoid,tanh"})
        sweeper.sweep([])
        record = json.loads((where / "sweep" / RECORD_FILE).read_text())
        assert record["baseline"] == "activation=sigmoid" and record["looks"] == [2, 3]
        assert record["arms"]["activation=relu"]["status"] == "resolved"  # −0.4 on every seed
        assert len(launcher.batches) == 2 and len(launcher.batches[1]) == 2  # sigmoid and tanh: seed 2


def test_a_sweep_whose_jobs_all_fail_stops_after_the_first_look(tmp_path: Path, capsys: pytest.CaptureFixture
                                                                 ) -> None:
    sweeper, launcher, _ = sweeper_for(tmp_path, lambda settings, seed: None, params={"pooling": "max,avg"})
    sweeper.sweep([])
    assert len(launcher.batches) == 1 and len(launcher.batches[0]) == 2 * 3  # start: 3 seeds
    record = json.loads((tmp_path / "sweep" / RECORD_FILE).read_text())
    assert record["arms"]["pooling=avg"]["status"] == "stopped" and record["arms"]["pooling=avg"]["looks"] == []
    assert "no job of look 1 completed" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "arguments", "words"), [
    ({}, ["activation=relu,sigmoid", "seed=0,1"], "seed=0,1 is invalid: hydra/sweeper=seeds chooses every job's seed"),
    ({}, ["model.width=4"], "the grid has one arm"),
    ({}, ["optimizer.lr=interval(0.01,0.1)"], "cannot sample an interval"),
    ({"baseline": "activation=gelu"}, ["activation=relu,sigmoid"], "hydra.sweeper.baseline=activation=gelu is "
                                                                    "invalid: no arm of this sweep"),
    ({"start": 1}, ["activation=relu,sigmoid"], "hydra.sweeper.start=1 is invalid"),
    ({"max_seeds": 2}, ["activation=relu,sigmoid"], "hydra.sweeper.max_seeds=2 is invalid"),
    ({"alpha": 1.5}, ["activation=relu,sigmoid"], "hydra.sweeper.alpha=1.5 is invalid"),
])
def test_a_bad_sweep_is_one_sentence_and_exit_2_before_any_job(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                options: dict, arguments: list[str], words: str
                                                                ) -> None:
    sweeper, launcher, _ = sweeper_for(tmp_path, accuracy, **options)
    with pytest.raises(SystemExit) as exit_:
        sweeper.sweep(arguments)
    assert exit_.value.code == 2 and launcher.batches == []
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err


def test_the_plugin_survives_hydras_plugin_scan() -> None:
    """Hydra executes every module under ``hydra_plugins`` at start-up without putting it in ``sys.modules``; a
    module that fails so (a dataclass with postponed annotations does) breaks every run, not only this sweeper's."""
    import importlib.util
    import sys

    import hydra_plugins.experiments_seed_sweeper.sweeper as installed

    spec = importlib.util.spec_from_file_location("hydra_plugins.experiments_seed_sweeper.scanned", installed.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # as hydra.core.plugins._scan_all_plugins does
    assert "hydra_plugins.experiments_seed_sweeper.scanned" not in sys.modules and module.SeedSweeper


def test_hydra_composes_the_sweeper_with_a_studys_grid() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=pooling", "hydra/sweeper=seeds", "hydra.sweeper.max_seeds=6",
                                          "hydra.sweeper.baseline={pooling:avg}"], return_hydra_config=True)
    node = cfg.hydra.sweeper
    assert node._target_ == "hydra_plugins.experiments_seed_sweeper.sweeper.SeedSweeper"
    assert dict(node.params) == {"pooling": "max,avg,stride"}  # the study's grid, set by conf/experiment/pooling.yaml
    assert (node.start, node.step, node.max_seeds, node.alpha, node.metric) == (3, 2, 6, 0.05, None)
    sweeper = SeedSweeper(**{k: v for k, v in node.items() if k != "_target_"})
    assert sweeper.baseline == {"pooling": "avg"}


@pytest.mark.slow
def test_a_real_seed_sweep_trains_reads_and_records(tmp_path: Path) -> None:
    from experiments import report
    from tests.sweep_cli import NO_DIAGNOSTICS, explain, run_sweep

    sweep = tmp_path / "sweep"
    result = run_sweep(sweep, NO_DIAGNOSTICS, "logger=[]", "hydra/sweeper=seeds", "activation=relu,sigmoid",
                       "hydra.sweeper.start=2", "hydra.sweeper.step=1", "hydra.sweeper.max_seeds=3")
    assert result.returncode == 0, explain(result)
    record = json.loads((sweep / RECORD_FILE).read_text())
    assert record["metric"] == "test/acc" and record["looks"] == [2, 3]  # the task's test metric by default
    arm = record["arms"]["activation=sigmoid"]
    assert arm["status"] in ("resolved", "cap") and arm["looks"][0]["pairs"] == 2
    assert len(list(sweep.glob("*/metrics.json"))) == 2 * (2 if arm["status"] == "resolved" else 3)
    assert report.main([str(sweep), "--no-plots", "--baseline", "activation=relu"]) == 0
