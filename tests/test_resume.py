"""Interrupt and resume: a real SIGINT checkpoints mid-epoch and the resumed run ends exactly where an uninterrupted
one does (in-process here, through the CLI subprocess in the slow test); SIGTERM stops the same way with 143;
a re-launched sweep skips its completed jobs."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.config import compose
from experiments.errors import ConfigError, RunInterrupted
from experiments.naming import recordable
from experiments.run import resume
from experiments.run.checkpoints import load_checkpoint
from experiments.run.layout import RunDir
from experiments.train import train
from tests.conftest import REPO, TINY, run_cli

BATCHES, EPOCHS = 8, 2  # per epoch: data.train_size / data.batch_size (conftest.TINY)
RUN = [f"trainer.max_epochs={EPOCHS}", "+callbacks.probe._target_=tests.probes.BatchProbe",
       "+callbacks.probe.delay=0.02"]


def _interrupt_cli_run(run: Path, signum: int, at_step: int, log: Path, *extra: str) -> subprocess.Popen:
    """Start ``python -m experiments.train`` and send it ``signum`` once it reports training step ``at_step``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    with log.open("w") as stderr:
        command = [sys.executable, "-m", "experiments.train", *TINY, *RUN, *extra, f"hydra.run.dir={run}"]
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            for line in proc.stdout:
                if line.strip() == f"probe: step {at_step}":
                    proc.send_signal(signum)
                    break
            proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    return proc


def _assert_stopped_mid_epoch(run: Path, signal_name: str) -> dict:
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "interrupted" and signal_name in record["error"]
    assert record["checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    position = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert 0 < position < BATCHES and checkpoint["epoch"] == 0  # inside the first epoch, not at its end
    return record


def _assert_resume_matches_reference(make_cfg, run: Path, reference_dir: Path, record: dict,
                                     overrides: tuple[str, ...] = tuple(RUN)) -> None:
    # continue as the CLI would with resume=true: the run's own config.yaml, nothing repeated
    resumed = train(make_cfg(["resume=true"], run_dir=run))
    reference = train(make_cfg(list(overrides), run_dir=reference_dir))
    assert resumed["status"] == "completed" and resumed["resumes"] == 1
    assert resumed["overrides"] == record["overrides"] and "resume=true" not in resumed["overrides"]
    assert resumed["metrics"] == reference["metrics"]  # bit-identical, every train/val/test number
    assert resumed["history"] == reference["history"] and len(resumed["history"]["epoch"]) == EPOCHS

    # the resumed run appended to the same TensorBoard run: one unbroken step sequence
    events = EventAccumulator(str(RunDir(run).tensorboard_events()), size_guidance={"scalars": 0}).Reload()
    steps = [e.step for e in events.Scalars("train/loss_step")]
    assert steps == sorted(set(steps)) and len(list((run / "tensorboard").rglob("events.out.tfevents.*"))) >= 2
    expected = EventAccumulator(str(RunDir(reference_dir).tensorboard_events()), size_guidance={"scalars": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/acc")] == [
        (e.step, e.value) for e in expected.Scalars("val/acc")]

    # once completed, resume=true is a no-op
    before = (run / "metrics.json").read_text()
    again = train(make_cfg(["resume=true"], run_dir=run))
    assert again["skipped"] and (run / "metrics.json").read_text() == before


def test_sigint_mid_epoch_then_resume_ends_like_an_uninterrupted_run(make_cfg, tmp_path: Path) -> None:
    """With augment=crop_flip: the random crops and flips of every batch after the restart are the uninterrupted
    run's, since they are drawn from (seed, epoch, batch) alone (data/augment.py)."""
    run, augmented = tmp_path / "run", (*RUN, "augment=crop_flip")
    stop = ["+callbacks.stop._target_=tests.probes.SelfSignal", "+callbacks.stop.at_step=3",
            f"+callbacks.stop.signum={int(signal.SIGINT)}"]  # a real SIGINT to this process during step 3
    with pytest.raises(RunInterrupted) as err:
        train(make_cfg([*augmented, *stop], run_dir=run))
    assert err.value.exit_code == 130
    record = _assert_stopped_mid_epoch(run, "SIGINT")
    assert record["choices"]["augment"] == "crop_flip"
    _assert_resume_matches_reference(make_cfg, run, tmp_path / "reference", record, augmented)


@pytest.mark.slow  # two CLI starts; by default the in-process tests above and below cover the stop and the resume
def test_cli_sigint_smoke_exits_130_and_its_printed_resume_command_finishes_the_run(tmp_path: Path) -> None:
    """The slow test below on a smaller run (64 training images in 4 batches, 1 epoch, no diagnostics): SIGINT in
    mid-epoch exits 130 without a traceback, and the resume command it prints, run as printed, completes the run."""
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    small = ["data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=16",
             "trainer.max_epochs=1", "diagnostics=off"]
    proc = _interrupt_cli_run(run, signal.SIGINT, 2, log, *small)
    stderr = log.read_text()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "interrupted" and "SIGINT" in record["error"]
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert 0 < checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"] < 4

    (hint,) = [line for line in stderr.splitlines() if line.startswith("resume with: ")]
    command = shlex.split(hint.removeprefix("resume with: "))
    assert command[:3] == ["python", "-m", "experiments.train"] and f"hydra.run.dir={run}" in command
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=REPO, capture_output=True, text=True, env=env,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["resumes"] == 1
    assert record["resumed_from"] == str(run / "checkpoints" / "last.ckpt") and len(record["history"]["epoch"]) == 1


@pytest.mark.slow
def test_cli_sigint_exits_130_with_a_resume_hint_and_resumes_exactly(make_cfg, tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = _interrupt_cli_run(run, signal.SIGINT, at_step=3, log=log)
    stderr = log.read_text()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert f"resume with: python -m experiments.train resume=true hydra.run.dir={run}" in stderr
    record = _assert_stopped_mid_epoch(run, "SIGINT")
    _assert_resume_matches_reference(make_cfg, run, tmp_path / "reference", record)


def test_sigterm_stops_at_the_batch_end_with_status_interrupted(make_cfg, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = make_cfg(["diagnostics=off", "+callbacks.stop._target_=tests.probes.SelfSignal",
                    "+callbacks.stop.at_step=2", f"+callbacks.stop.signum={int(signal.SIGTERM)}"], run_dir=run)
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(RunInterrupted) as err:
        train(cfg)
    assert err.value.signum == signal.SIGTERM and err.value.exit_code == 143
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "interrupted" and "SIGTERM at epoch 0, step 3" in record["error"]
    assert record["checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3  # the running batch finished
    # handlers put back after the run: whatever they were (SIG_IGN under nohup or in a background job, not
    # default_int_handler)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_relaunched_sweep_skips_completed_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    common = [*TINY, "data.train_size=64", "data.val_size=32", "data.test_size=32", "diagnostics=off",
              "logger=csv", f"hydra.sweep.dir={sweep}"]
    first = run_cli("experiments.train", "-m", "seed=0", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (sweep / "0" / "metrics.json").read_text()

    again = run_cli("experiments.train", "-m", "seed=0,1", "resume=true", *common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("(already completed; skipped)") == 1
    assert (sweep / "0" / "metrics.json").read_text() == before
    new = json.loads((sweep / "1" / "metrics.json").read_text())
    assert new["status"] == "completed" and "seed=1" in new["overrides"] and "resume=true" not in new["overrides"]
    assert "2 of 2 jobs completed" in again.stdout
    hydra_record = OmegaConf.load(sweep / "0" / ".hydra" / "overrides.yaml")
    assert "seed=0" in hydra_record and "resume=true" not in hydra_record  # Hydra's record is the original run's


def _started_run(tmp_path: Path, overrides: list[str]) -> Path:
    """A run dir as an interrupted first start leaves it (config snapshot + record), without training."""
    run = tmp_path / "run"
    cfg = compose([*TINY, *overrides])
    resume.snapshot(cfg, run)
    (run / "metrics.json").write_text(json.dumps({"status": "interrupted", "overrides": overrides,
                                                   "choices": {"model": "cnn"}, "wall_time_s": 2.5}))
    return run


def test_resume_uses_the_runs_own_config_and_refuses_changes(tmp_path: Path) -> None:
    run = _started_run(tmp_path, ["model.width=8"])
    cfg = compose([*TINY, "resume=true", "trainer.enable_progress_bar=true"])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(run)
    plan = resume.plan(cfg, ["resume=true", "model.width=8", "trainer.enable_progress_bar=true"], {})
    assert plan.cfg.model.width == 8 and plan.overrides == ["model.width=8"] and plan.checkpoint is None
    assert plan.cfg.trainer.enable_progress_bar is True  # a key that does not change the numbers may differ
    with pytest.raises(ConfigError) as err:
        resume.plan(cfg, ["resume=true", "model.width=16"], {})
    message = str(err.value)
    assert message.startswith("model.width=16 is invalid: resume=true continues") and "model.width=8" in message
    assert "start a new run" in message and "\n" not in message


def test_ckpt_path_starts_a_branch_with_the_current_config(tmp_path: Path) -> None:
    cfg = compose([*TINY, f"ckpt_path={tmp_path / 'x.ckpt'}"])
    plan = resume.plan(cfg, [f"ckpt_path={tmp_path / 'x.ckpt'}", "seed=3"], {"model": "cnn"})
    assert plan.checkpoint == tmp_path / "x.ckpt" and plan.cfg is cfg and plan.overrides == ["seed=3"]
    assert recordable(["resume=true", "+ckpt_path=a", "seed=1"]) == ["seed=1"]


def test_a_resumed_checkpoint_is_read_and_verified_once(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """The resume walk goes one way: the plan loads and checks the checkpoint, and Lightning's load gets that copy."""
    from experiments.run import checkpoints

    first = make_cfg(["diagnostics=off", "logger=csv", "scheduler=none"], run_dir=tmp_path / "first")
    assert train(first)["status"] == "completed"
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    reads: list[Path] = []
    real = checkpoints.load_checkpoint

    def counting(path, *args, **kwargs):
        reads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "load_checkpoint", counting)
    branch = make_cfg(["diagnostics=off", "logger=csv", "scheduler=none", "trainer.max_epochs=2", f"ckpt_path={last}"],
                      run_dir=tmp_path / "branch")
    record = train(branch)
    assert record["status"] == "completed" and record["resumed_from"] == str(last)
    assert reads.count(last) == 1, reads  # verified once, then handed to fit
    assert record["epochs"] == 2  # fit really continued from the verified state (epoch 1 -> 2)


def test_a_bad_file_outside_a_training_batch_ends_with_the_resume_hint_when_a_checkpoint_exists(tmp_path: Path) -> None:
    """A bad streamed file met at a validation or test batch (or under DDP) writes nothing, but when last.ckpt is
    there (an epoch's end) the sentence still ends with how to continue; with no checkpoint yet it says nothing more."""
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import RunningStage, TrainerFn

    from experiments.errors import DataFileError
    from experiments.run.bad_data import CheckpointOnBadFile

    last = tmp_path / "checkpoints" / "last.ckpt"
    saved: list[Path] = []
    trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING, stage=RunningStage.VALIDATING),
                              world_size=1, save_checkpoint=lambda path, weights_only: saved.append(path))
    callback = CheckpointOnBadFile(last)
    callback.on_train_start(trainer, None)
    fresh = DataFileError("/data/0042.png", "it cannot be read as an image", "re-export the file")
    callback.on_exception(trainer, None, fresh)  # epoch 0's validation: nothing to continue from yet
    assert str(fresh) == "/data/0042.png is invalid: it cannot be read as an image; re-export the file."
    assert callback.run_summary() == {} and not saved

    last.parent.mkdir()
    last.write_bytes(b"PK")  # the end of an earlier epoch
    for fn, stage, world in ((TrainerFn.FITTING, RunningStage.VALIDATING, 1), (TrainerFn.TESTING,
                             RunningStage.TESTING, 1), (TrainerFn.FITTING, RunningStage.TRAINING, 2)):
        trainer.state, trainer.world_size = SimpleNamespace(fn=fn, stage=stage), world
        error = DataFileError("/data/0042.png", "it cannot be read as an image", "re-export the file")
        callback.on_exception(trainer, None, error)
        assert str(error) == ("/data/0042.png is invalid: it cannot be read as an image; re-export the file, then "
                              f"continue from {last} with resume=true.")
        assert callback.run_summary() == {"checkpoint": str(last)} and not saved  # nothing written outside training
    trainer.state, trainer.world_size = SimpleNamespace(fn=TrainerFn.FITTING, stage=RunningStage.TRAINING), 1
    error = DataFileError("/data/0042.png", "it cannot be read as an image", "re-export the file")
    callback.on_exception(trainer, None, error)  # a training batch: the batches before it are saved first
    assert saved == [last] and str(error).endswith(f"then continue from {last} with resume=true.")
