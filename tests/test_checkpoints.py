"""Checkpoint safety: every bad file is one sentence naming it, and loading never runs pickled code."""

from __future__ import annotations

import builtins
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from experiments.config import compose
from experiments.errors import ConfigError
from experiments.run.checkpoints import (
    CheckpointError,
    SafeCheckpointIO,
    check_resumable,
    load_checkpoint,
    load_weights,
    verify_resumable,
)

pytest_plugins = ["tests.trained_run"]


class _Payload:
    """Unpickling this creates ``marker`` on disk: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def _task(overrides: tuple[str, ...] = ()):
    from experiments import build
    from tests.trained_run import OVERRIDES

    return build.build_task(compose([*OVERRIDES, *overrides]))


def _sentence(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert message.startswith(f"ckpt_path={path} is invalid: ") and message.endswith(".")
    assert "\n" not in message
    return message


def test_good_checkpoint_loads_weights_only_and_fits_its_network(trained_run) -> None:
    run, _ = trained_run
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert {"state_dict", "optimizer_states", "loops"} <= set(checkpoint)
    task = _task()
    load_weights(task, run / "checkpoints" / "best.ckpt")
    saved = load_checkpoint(run / "checkpoints" / "best.ckpt")["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in task.state_dict().items())
    verify_resumable(run / "checkpoints" / "last.ckpt", task)  # no error


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda src, dst: None, "no such file"),
        (lambda src, dst: dst.write_bytes(b""), "empty"),
        (lambda src, dst: dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2]), "truncated"),
        (lambda src, dst: dst.write_bytes(b"not a checkpoint at all\n" * 10), "not a PyTorch checkpoint"),
        (lambda src, dst: torch.save(torch.zeros(3), dst), "not a Lightning checkpoint"),
        (lambda src, dst: torch.save({"weights": torch.zeros(3)}, dst), "not a Lightning checkpoint"),
    ],
    ids=["missing", "empty", "truncated", "garbage", "bare-tensor", "foreign-dict"],
)
def test_unusable_files_are_one_sentence(trained_run, tmp_path: Path, make, phrase: str) -> None:
    run, _ = trained_run
    bad = tmp_path / "bad.ckpt"
    make(run / "checkpoints" / "last.ckpt", bad)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert phrase in _sentence(err, bad)
    assert isinstance(err.value, ConfigError)  # the CLIs print it without a traceback and exit 2


def test_flipped_bytes_inside_the_archive_fail_the_checksum(trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    data = bytearray((run / "checkpoints" / "last.ckpt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    bad = tmp_path / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert "CRC-32" in _sentence(err, bad) or "corrupt" in str(err.value)


@pytest.mark.parametrize("container", ["zip", "bare-pickle"])
def test_pickled_code_is_never_executed(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.ckpt"
    if container == "zip":
        torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6", "x": _Payload(marker)}, bad)
    else:
        bad.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert not marker.exists()
    message = _sentence(err, bad)
    assert "refuses to execute" in message if container == "zip" else "arbitrary code" in message


def test_a_checkpoint_of_another_network_is_foreign(trained_run) -> None:
    run, _ = trained_run
    other = _task(("model.width=8",))  # same model class, other widths: every conv weight has another shape
    with pytest.raises(CheckpointError) as err:
        load_weights(other, run / "checkpoints" / "best.ckpt")
    assert "different network" in str(err.value) and "another shape" in str(err.value)
    resnet = _task(("model=resnet", "model.depth=8"))
    with pytest.raises(CheckpointError, match="weights missing"):
        load_weights(resnet, run / "checkpoints" / "best.ckpt")


def test_weights_only_checkpoint_cannot_resume(trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    checkpoint = load_checkpoint(run / "checkpoints" / "best.ckpt")
    slim = {k: checkpoint[k] for k in ("state_dict", "pytorch-lightning_version", "epoch", "global_step")}
    path = tmp_path / "slim.ckpt"
    torch.save(slim, path)
    with pytest.raises(CheckpointError, match="cannot continue"):
        check_resumable(load_checkpoint(path), path)


def test_lightning_loads_through_the_safe_io(trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    io = SafeCheckpointIO()
    assert "state_dict" in io.load_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=False)
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        io.load_checkpoint(bad, weights_only=False)  # weights_only=False from a caller changes nothing


def test_training_from_a_bad_ckpt_path_stops_before_training(trained_run, make_cfg, tmp_path: Path) -> None:
    from experiments.train import train
    from tests.trained_run import OVERRIDES

    run, _ = trained_run
    cut = tmp_path / "cut.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", cut)
    cut.write_bytes(cut.read_bytes()[:-500])
    cfg = make_cfg([*OVERRIDES, f"ckpt_path={cut}"], tiny=False, run_dir=tmp_path / "branch")
    with pytest.raises(CheckpointError, match="truncated"):
        train(cfg)
    assert not (tmp_path / "branch" / "checkpoints").exists()
