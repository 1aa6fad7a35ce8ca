"""Folder data above ``data.memory_budget_mb`` stream from disk: the same batches bit for bit as in memory (workers or
not), the choice logged, and a bad file met at a training batch stops the run with a checkpoint from which, once
the file is fixed, ``resume=true`` ends exactly where a run that never met it does (with ``augment=crop_flip``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from experiments.data.datamodule import keep_batch
from experiments.data.folder_data import FileSplit
from experiments.data.sampling import EpochShuffleSampler
from experiments.data.segmentation_folders import MaskFolderDataModule
from experiments.data.vision import ImageFolderDataModule
from experiments.errors import DataFileError
from experiments.run.checkpoints import load_checkpoint
from experiments.train import train
from tests.data.mask_trees import truncate, write_mask_folder
from tests.test_vision_data import write_image_folder


def epochs(dm, count: int = 2) -> list[tuple[torch.Tensor, ...]]:
    """Every training batch of ``count`` epochs (the sampler's order), then every validation batch."""
    loader, batches = dm.train_dataloader(), []
    for epoch in range(count):
        loader.sampler.set_epoch(epoch)
        batches += list(loader)
    return batches + list(dm.val_dataloader())


def same(a: list, b: list) -> bool:
    pairs = zip(a, b, strict=True) if len(a) == len(b) else []
    return len(a) == len(b) and all(torch.equal(x, y) for p, q in pairs for x, y in zip(p, q, strict=True))


def test_streamed_batches_equal_in_memory_batches_bit_for_bit(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    root = write_mask_folder(tmp_path / "seg", n=20, size=20)
    options = {"num_classes": 3, "image_size": 16, "batch_size": 4, "stats_images": 7}
    caplog.set_level(logging.INFO, logger="experiments.data.folder_data")
    memory = MaskFolderDataModule(str(root), **options)
    memory.setup()
    streamed = MaskFolderDataModule(str(root), memory_budget_mb=0, **options)
    streamed.setup()
    workers = MaskFolderDataModule(str(root), memory_budget_mb=0.001, num_workers=2, **options)
    workers.setup()
    assert not memory.streaming and streamed.streaming and workers.streaming
    assert isinstance(streamed.splits["train"], FileSplit) and memory.num_workers == 0 and streamed.num_workers == 1
    assert streamed.mean == memory.mean and streamed.std == memory.std
    reference = epochs(memory)
    assert same(epochs(streamed), reference) and same(epochs(workers), reference)
    choices = [r.getMessage() for r in caplog.records]
    assert any(m.endswith("data.memory_budget_mb=2048: loading into memory") for m in choices)
    streaming = "data.memory_budget_mb=0: streaming from disk, read by 1 DataLoader workers"
    assert any(m.endswith(streaming) for m in choices)


def test_an_image_folder_streams_the_same_batches(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    root = write_image_folder(tmp_path / "images", per_class=6)
    memory = ImageFolderDataModule(str(root), image_size=8, batch_size=4)
    streamed = ImageFolderDataModule(str(root), image_size=8, batch_size=4, memory_budget_mb=0)
    memory.setup()
    streamed.setup()
    assert streamed.streaming and same(epochs(streamed), epochs(memory))


def test_a_bad_file_in_a_worker_is_the_same_one_sentence(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "seg", n=4, size=20)
    dm = MaskFolderDataModule(str(root), num_classes=3, image_size=16)
    samples = dm.list_samples()["train"]
    truncate(samples[1][1])
    loader = DataLoader(FileSplit(samples, dm.reader()), batch_size=2, num_workers=1, collate_fn=keep_batch)
    with pytest.raises(DataFileError) as err:
        list(loader)
    message = str(err.value)
    assert message.startswith(f"{samples[1][1]} is invalid: it cannot be read as an image (") and "\n" not in message
    assert err.value.path == samples[1][1]


def test_a_bad_file_at_a_streamed_batch_checkpoints_and_resumes_exactly(tmp_path: Path, make_cfg) -> None:
    root = write_mask_folder(tmp_path / "seg", n=16, size=16)  # 12 training images: 3 batches of 4
    common = ["model=fcn", "model.stages=2", "model.variant=16s", "data=mask_folder", f"data.root={root}",
              "data.num_classes=3", "data.image_size=16", "data.batch_size=4", "data.num_workers=0",
              "data.memory_budget_mb=0", "data.check_files=0", "data.stats_images=1", "augment=crop_flip",
              "augment.pad=2",
              "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "diagnostics=off",
              "logger=csv"]
    reference = train(make_cfg(common, tiny=False, run_dir=tmp_path / "reference"))

    # the mask of the first image of the third training batch of epoch 0 (seed 0), cut short on disk; not the
    # first training pair, the one image statistics are taken from (data.stats_images=1): setup does not meet it
    train_pairs = MaskFolderDataModule(str(root), num_classes=3).list_samples()["train"]
    sampler = EpochShuffleSampler(train_pairs, seed=0)
    sampler.set_epoch(0)
    assert sampler.order()[2 * 4] != 0
    bad = train_pairs[sampler.order()[2 * 4]][1]
    original = truncate(bad)

    run = tmp_path / "run"
    with pytest.raises(DataFileError) as err:
        train(make_cfg(common, tiny=False, run_dir=run))
    last = run / "checkpoints" / "last.ckpt"
    assert str(err.value) == (f"{bad} is invalid: {str(err.value).split(' is invalid: ')[1].split(';')[0]}; re-export "
                              "the file, or remove it (and its mask) from the dataset, then continue from "
                              f"{last} with resume=true.")
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == str(err.value) and record["checkpoint"] == str(last)
    state = load_checkpoint(last)
    assert state["epoch"] == 0 and state["global_step"] == 2  # the two batches before the bad file are kept
    assert state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == 2

    bad.write_bytes(original)  # the file fixed: continue the run, nothing repeated
    resumed = train(make_cfg(["resume=true"], tiny=False, run_dir=run))
    assert resumed["status"] == "completed" and resumed["resumes"] == 1
    assert resumed["metrics"] == reference["metrics"]  # bit-identical, every train/val/test number
    assert resumed["history"] == reference["history"]
