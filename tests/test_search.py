"""The search's parts without training: sweep syntax -> distributions, samplers/pruners by name, the objective's
direction, the report step, and the study file's repair and total count (a real SQLite study in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from experiments.config import compose  # noqa: E402
from experiments.errors import ConfigError  # noqa: E402
from experiments.search import objective, space, storage, strategies  # noqa: E402


def test_the_experiments_space_becomes_log_float_log_float_and_categorical() -> None:
    params = {"optimizer.lr": "tag(log, interval(0.0003, 0.03))", "optimizer.weight_decay": "interval(0, 0.1)",
              "model.width": "choice(8, 16, 32)", "model.depth": "range(2, 9, 2)", "+x.k": "tag(int, interval(1, 5))"}
    found = space.parse(params, ["data.batch_size=32", "optimizer.lr=tag(log, interval(0.001, 0.01))"])
    dists = found.distributions
    assert dists["optimizer.lr"] == optuna.distributions.FloatDistribution(0.001, 0.01, log=True)  # command line wins
    assert dists["optimizer.weight_decay"] == optuna.distributions.FloatDistribution(0.0, 0.1)
    assert dists["model.width"].choices == (8, 16, 32)
    assert dists["model.depth"] == optuna.distributions.IntDistribution(2, 8, step=2)  # range's stop excluded
    assert dists["x.k"] == optuna.distributions.IntDistribution(1, 5)
    assert found.fixed == ["data.batch_size=32"]
    overrides = found.overrides({"optimizer.lr": 0.002, "optimizer.weight_decay": 0.5, "model.width": 16,
                                 "model.depth": 4, "x.k": 3})
    assert overrides == ["data.batch_size=32", "optimizer.lr=0.002", "optimizer.weight_decay=0.5", "model.width=16",
                         "model.depth=4", "+x.k=3"]


@pytest.mark.parametrize("value", ["relu", "a b", "it's", "null", "1e-3", "sqlite:////tmp/x.db", True, None, 0.5,
                                   [1, "x y"], {"name": "median", "n": 2}])
def test_hydra_value_reads_back_unchanged(value) -> None:
    parsed = OverridesParser.create().parse_override(f"k={space.hydra_value(value)}").value()
    assert parsed == value


@pytest.mark.parametrize(("params", "arguments", "key", "words"), [
    ({"seed": "choice(0, 1)"}, [], "hydra.sweeper.params.seed", "not seeds"),
    ({}, ["seed=0,1"], "seed", "not seeds"),
    ({"optimizer.lr": "tag(log, interval(0, 1))"}, [], "hydra.sweeper.params.optimizer.lr", "low > 0"),
    ({"optimizer.lr": "interval(0.3, 0.1)"}, [], "hydra.sweeper.params.optimizer.lr", "low < high"),
    ({"model.depth": "range(5, 1)"}, [], "hydra.sweeper.params.model.depth", "go up"),
])
def test_a_bad_search_space_is_one_sentence(params, arguments, key, words) -> None:
    with pytest.raises(ConfigError) as err:
        space.parse(params, arguments)
    assert err.value.key == key and words in str(err.value)
    assert str(err.value).count(".") >= 1 and "\n" not in str(err.value)


def test_samplers_and_pruners_are_built_by_name_and_a_wrong_name_or_setting_is_refused() -> None:
    assert isinstance(strategies.build_sampler({"name": "random", "seed": 3}), optuna.samplers.RandomSampler)
    assert isinstance(strategies.build_pruner({"name": "hyperband", "warmup_epochs": 1, "max_resource": 6}),
                      optuna.pruners.HyperbandPruner)
    assert isinstance(strategies.build_pruner({"name": "none"}), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError, match=r"sampler.name=tpx is invalid: .* choose one of tpe, random"):
        strategies.build_sampler({"name": "tpx"})
    with pytest.raises(ConfigError, match=r"pruner.name=mediam is invalid"):
        strategies.build_pruner({"name": "mediam"})
    with pytest.raises(ConfigError, match=r"pruner.n_startup_trials=4 is invalid: the threshold pruner takes no"):
        strategies.build_pruner({"name": "threshold", "lower": 0.1, "n_startup_trials": 4})
    with pytest.raises(ConfigError, match="warmup_epochs"):
        strategies.warmup_epochs({"warmup_epochs": -1})


def test_the_direction_follows_the_tasks_metric_and_the_opposite_is_refused() -> None:
    classification = compose([])
    assert objective.resolve(classification, None, None) == ("classification", "val/acc", "maximize")
    assert objective.resolve(classification, "val/loss", None)[2] == "minimize"
    assert objective.resolve(compose(["model=autoencoder"]), None, "maximize")[1] == "val/psnr"
    with pytest.raises(ConfigError, match=r"direction=minimize is invalid: val/acc of a classification run is "
                                          r"maximized"):
        objective.resolve(classification, None, "minimize")
    with pytest.raises(ConfigError, match="never a test one"):
        objective.resolve(classification, "test/acc", None)


def test_each_seed_and_epoch_has_its_own_step() -> None:
    steps = [objective.report_step(seed, 3, epoch) for seed in range(2) for epoch in (1, 2, 3)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_running_trials_of_a_killed_sweep_fail_and_come_back_and_the_total_counts_them_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna' / 'study.db'}"
    study = optuna.create_study(storage=storage.open_storage(url), study_name="s", direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    done = study.ask({"lr": lr})
    study.tell(done, 0.5)
    pruned = study.ask({"lr": lr})
    study.tell(pruned, state=TrialState.PRUNED)
    killed = study.ask({"lr": lr})  # its process died: never told
    assert storage.trials_done(study) == 2

    again = optuna.load_study(study_name="s", storage=storage.open_storage(url))
    assert storage.repair_running(again) == [killed.number]
    assert again.trials[killed.number].state == TrialState.FAIL
    assert storage.trials_done(again) == 2  # the failed one is proposed again, so it does not count
    proposed = again.ask({"lr": lr})
    assert proposed.params == killed.params and proposed.user_attrs["requeued_from"] == killed.number
    again.tell(proposed, 0.4)
    assert storage.trials_done(again) == 3
    assert storage.repair_running(again) == []


def test_search_record_round_trips_and_trial_overrides_drop_the_search_s_own(tmp_path: Path) -> None:
    storage.write_record(tmp_path, {"storage": "sqlite:///x.db", "study_name": "s"})
    assert storage.read_record(tmp_path) == {"storage": "sqlite:///x.db", "study_name": "s"}
    assert storage.read_record(tmp_path / "none") is None
    kept = storage.trial_overrides(["experiment=e", "optimizer.lr=0.01", "seed=3", "trainer.packed_jobs=2",
                                    "+callbacks.optuna_trial.trial=4", "+callbacks.optuna_trial._target_=x"])
    assert kept == ["experiment=e", "optimizer.lr=0.01"]


def test_the_experiments_search_space_names_real_keys_and_its_corners_validate() -> None:
    """Replaces the hydra-optuna-sweeper test of test_experiments_configs: the space as this sweeper reads it."""
    import itertools

    from omegaconf import OmegaConf

    from experiments.config import conf_dir
    from experiments.validation import validate

    sweeper = OmegaConf.load(Path(conf_dir()) / "experiment" / "optuna_lr_wd_width.yaml").hydra.sweeper
    dists = space.parse(OmegaConf.to_container(sweeper.params)).distributions
    assert set(dists) == {"optimizer.lr", "optimizer.weight_decay", "model.width"} and dists["optimizer.lr"].log
    base = compose(["experiment=optuna_lr_wd_width"])
    for key in dists:
        assert OmegaConf.select(base, key) is not None, key
    lr, wd = dists["optimizer.lr"], dists["optimizer.weight_decay"]
    for corner in itertools.product((lr.low, lr.high), (wd.low, wd.high), dists["model.width"].choices):
        overrides = [f"optimizer.lr={corner[0]}", f"optimizer.weight_decay={corner[1]}", f"model.width={corner[2]}"]
        validate(compose(["experiment=optuna_lr_wd_width", *overrides]))
