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


def test_a_bad_checkpoints_hint_names_only_files_that_exist(tmp_path: Path) -> None:
    """A run that kept no best.ckpt is not told to use one: the fix names the checkpoints beside the bad file that
    exist (last first), or none."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    best = folder / "best.ckpt"
    best.write_bytes(b"")  # a save that never completed
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(best)
    alone = _sentence(err, best)
    assert alone.endswith("the file is empty (its save never completed); re-create it (train again, or copy a "
                          "complete file again).")
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 a checkpoint's first bytes")
    (folder / "best-epoch003.ckpt").write_bytes(b"PK")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(best)
    assert _sentence(err, best).endswith(f"or use {folder / 'last.ckpt'} or {folder / 'best-epoch003.ckpt'} instead.")
    missing = folder / "averaged.ckpt"
    with pytest.raises(CheckpointError) as err:  # a name that does not exist: the ones that do
        load_checkpoint(missing)
    assert _sentence(err, missing).endswith(f"no such file; point it at {folder / 'last.ckpt'} or "
                                            f"{folder / 'best-epoch003.ckpt'}.")


def test_a_weights_only_file_points_at_last_ckpt_only_if_it_exists(tmp_path: Path) -> None:
    weights = {"state_dict": {}, "pytorch-lightning_version": "2.6"}
    slim = tmp_path / "averaged.ckpt"
    with pytest.raises(CheckpointError) as err:
        check_resumable(weights, slim)
    assert "; start a new run without it, or evaluate this file" in str(err.value) and "last.ckpt" not in str(err.value)
    (tmp_path / "last.ckpt").write_bytes(b"PK")
    with pytest.raises(CheckpointError) as err:
        check_resumable(weights, slim)
    assert f"; continue from {tmp_path / 'last.ckpt'}, or evaluate this file" in str(err.value)
