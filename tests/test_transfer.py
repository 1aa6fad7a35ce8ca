"""Starting an encoder from another run (``encoder_from``) or from this run's own pre-training (``pretrain``):
the weights arrive exactly, every bad source is one sentence before training, and the pre-training is a run."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments import build
from experiments import evaluate as ev
from experiments.config import compose
from experiments.errors import ConfigError, RunInterrupted
from experiments.run.layout import RunDir
from experiments.run.probe import probe_network
from experiments.run.transfer import start_encoder
from experiments.train import train
from experiments.validation import validate
from tests.conftest import TINY

pytest_plugins = ["tests.autoencoder_run"]


def run_config(run_dir: Path, overrides: list[str]):
    cfg = compose([*TINY, "diagnostics=off", *overrides])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(run_dir)
    return cfg


def test_a_classifier_starts_from_the_autoencoders_encoder_exactly(autoencoder_run, tmp_path: Path) -> None:
    """Weights and norm statistics move name by name, so the classifier's probe, before any training, is the
    autoencoder's probe on the same data to the last digit."""
    source, _ = autoencoder_run
    saved = ev._task_with_weights(ev.load_run_config(source), RunDir(source).best_checkpoint).network
    cfg = run_config(tmp_path / "cnn", ["pooling=avg", "data.train_size=1024", "data.test_size=512",
                                        "trainer.max_epochs=0", "probe=true", f"encoder_from={source}"])
    record = train(cfg)
    assert record["status"] == "completed" and record["encoder_from"] == str(source)
    assert record["encoder_tensors"] == len(saved.encoder.state_dict())
    expected = probe_network(saved, build.build_datamodule(cfg))["metrics"]
    assert record["metrics"]["test/probe_acc"] == expected["test/probe_acc"]

    network = build.build_network(cfg)
    start_encoder(network, source)
    for name, tensor in saved.encoder.state_dict().items():
        assert torch.equal(network.encoder.state_dict()[name], tensor), name


def test_an_encoder_of_another_shape_is_one_sentence_exit_2(autoencoder_run, make_cfg, tmp_path: Path) -> None:
    """Refused in one sentence before training (a ``ConfigError``: the CLI prints it without a traceback and exits
    2, as tests/test_config.py checks through the CLI)."""
    source, _ = autoencoder_run
    cfg = make_cfg([f"encoder_from={source}", "pooling=avg", "model.width=8", "data.train_size=64",
                    "data.batch_size=32"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    (line,) = str(refused.value).splitlines()
    assert line.startswith(f"encoder_from={source} is invalid: 15 of its encoder weights have another shape "
                           "(e.g. encoder.stages.0.convs.0.0.weight: [16, 3, 3, 3] there, [8, 3, 3, 3] here)")
    assert "model.width" in line
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def test_bad_sources_are_one_sentence(autoencoder_run, tmp_path: Path) -> None:
    source, _ = autoencoder_run
    network = build.build_network(compose(["model=cnn"]))

    missing = compose([f"encoder_from={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="is invalid: no such run directory"):
        validate(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no checkpoints/best.ckpt"):
        validate(compose([f"encoder_from={tmp_path / 'empty'}"]))

    broken = RunDir(tmp_path / "broken")
    broken.checkpoints.mkdir(parents=True)
    data = RunDir(source).best_checkpoint.read_bytes()
    broken.best_checkpoint.write_bytes(data[: len(data) // 2])  # a copy that stopped half-way
    with pytest.raises(ConfigError) as info:
        start_encoder(network, broken.root)
    assert str(info.value).startswith(f"encoder_from={broken.best_checkpoint} is invalid: the archive is truncated")

    foreign = RunDir(tmp_path / "foreign")
    foreign.checkpoints.mkdir(parents=True)
    torch.save({"state_dict": {"network.fc.weight": torch.zeros(2, 2)}, "pytorch-lightning_version": "2.6"},
               foreign.best_checkpoint)
    with pytest.raises(ConfigError, match="its checkpoint holds no encoder weights"):
        start_encoder(network, foreign.root)


def test_transfer_settings_are_checked_before_anything_runs() -> None:
    cases = [
        (["model=resnet", "pretrain=autoencoder"], "pretrain=autoencoder is invalid: pre-training trains an encoder"),
        (["pretrain=autoencoder", "encoder_from=."], "encoder_from=. is invalid: pretrain=autoencoder already"),
        (["pretrain=autoencoder", "pretrain.epochs=0"], "pretrain.epochs=0 is invalid"),
        (["pretrain=autoencoder", "pretrain.model.noise_std=-1"], "pretrain.model.noise_std=-1 is invalid"),
        (["model=resnet", "encoder_from=."], "encoder_from=. is invalid: model=resnet has no shared encoder"),
        (["pretrain=autoencoder", "trainer=ddp_cpu"], "pretrain=autoencoder is invalid: it trains two runs in one"),
    ]
    for overrides, start in cases:
        with pytest.raises(ConfigError) as info:
            validate(compose(overrides))
        assert str(info.value).startswith(start), str(info.value)
    validate(compose(["pretrain=autoencoder", "upsampling=unpool"]))  # the pre-training decoder may unpool


def test_parameter_free_parts_must_match_the_source_run(autoencoder_run) -> None:
    """Average pooling has no weights, so only the source run's config tells it from max pooling."""
    source, _ = autoencoder_run
    validate(compose([f"encoder_from={source}", "pooling=avg"]))
    with pytest.raises(ConfigError) as info:
        validate(compose([f"encoder_from={source}"]))
    assert str(info.value).startswith(f"encoder_from={source} is invalid: its encoder ran with pooling.name=avg and "
                                      "this run's has pooling.name=max")
    assert "add pooling=avg" in str(info.value)


def test_pretrain_trains_an_autoencoder_run_first_and_starts_from_it(tmp_path: Path) -> None:
    cfg = run_config(tmp_path / "run", ["pretrain=autoencoder", "pretrain.epochs=1", "trainer.max_epochs=0",
                                        "probe=true", "data.train_size=128", "data.test_size=128"])
    record = train(cfg)
    pretraining = RunDir(cfg.run_dir).pretraining
    assert record["status"] == "completed" and record["encoder_from"] == str(pretraining.root)
    assert record["choices"]["pretrain"] == "autoencoder"
    inner = json.loads(pretraining.metrics.read_text())
    assert inner["status"] == "completed" and inner["task"] == "reconstruction" and inner["epochs"] == 1
    assert inner["choices"]["model"] == "autoencoder" and inner["choices"]["loss"] == "pixel_mse"
    assert not any(o.startswith(("trainer.max_epochs", "pretrain", "probe")) for o in inner["overrides"])
    inner_cfg = OmegaConf.load(pretraining.config)
    assert inner_cfg.model.width == cfg.model.width and inner_cfg.trainer.max_epochs == 1  # this run's encoder
    # the run's encoder is the pre-training run's best: its probe is that encoder's probe
    trained = ev._task_with_weights(ev.load_run_config(pretraining.root), pretraining.best_checkpoint).network
    expected = probe_network(trained, build.build_datamodule(cfg))["metrics"]["test/probe_acc"]
    assert record["metrics"]["test/probe_acc"] == expected

    shutil.rmtree(pretraining.checkpoints)  # resuming the finished run skips it: nothing needs the pre-training
    cfg.resume = True
    assert train(cfg)["skipped"]


def test_a_stop_during_pretraining_resumes_it_and_ends_like_an_uninterrupted_run(make_cfg, tmp_path: Path) -> None:
    """SIGINT at the pre-training run's step 6 (of 8; this run itself has 4): both records say interrupted;
    ``resume=true`` on this run's dir (nothing repeated) continues the pre-training mid-epoch, then trains,
    bit-identical to a run never stopped."""
    base = ["pretrain=autoencoder", "pretrain.epochs=2", "trainer.max_epochs=1", "diagnostics=off", "model.width=8",
            "data.train_size=128", "data.val_size=32", "data.test_size=32"]
    stop = ["+callbacks.stop._target_=tests.probes.SelfSignal", "+callbacks.stop.at_step=6",
            f"+callbacks.stop.signum={int(signal.SIGINT)}"]
    run = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        train(make_cfg([*base, *stop], run_dir=run))
    inner = json.loads(RunDir(run).pretraining.metrics.read_text())
    assert inner["status"] == "interrupted" and json.loads(RunDir(run).metrics.read_text())["status"] == "interrupted"

    resumed = train(make_cfg(["resume=true"], run_dir=run))
    reference = train(make_cfg(base, run_dir=tmp_path / "reference"))
    assert resumed["status"] == "completed" and resumed["choices"]["pretrain"] == "autoencoder"
    assert json.loads(RunDir(run).pretraining.metrics.read_text())["resumes"] == 1
    assert resumed["metrics"] == reference["metrics"]
