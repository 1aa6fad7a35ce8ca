"""Device placement of in-memory data: the choice and its reason, and loaders that serve the very batches the
DataLoader path serves (same order, same resume position), from wherever the split lives.

A CUDA device is stood in for by ``meta`` (tensors with shapes but no storage), which exercises the move,
the on-device gather and the streamed copy without a GPU; only the pinned-memory path needs a real one."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from experiments.data.datamodule import InMemoryDataModule, TensorSplit, keep_batch
from experiments.data.placement import (
    RESIDENT,
    STREAMED,
    WORKERS,
    DeviceLoader,
    ResumableDeviceLoader,
    choose_placement,
    serve,
)
from experiments.data.sampling import EpochShuffleSampler, ResumableLoader

GB = 1024**3


def split(n: int = 50) -> TensorSplit:
    images = torch.arange(n * 3 * 2 * 2, dtype=torch.float32).view(n, 3, 2, 2)
    return TensorSplit(images, torch.arange(n))


def test_placement_is_resident_when_the_data_fit_the_budget_and_half_the_free_memory() -> None:
    cuda = torch.device("cuda", 0)
    fits = choose_placement(cuda, nbytes=GB, budget_bytes=4 * GB, free_bytes=10 * GB)
    assert fits.mode == RESIDENT and "4096 MB budget" in fits.reason and fits.record()["data_mb"] == 1024.0
    over = choose_placement(cuda, nbytes=5 * GB, budget_bytes=4 * GB, free_bytes=80 * GB)
    assert over.mode == STREAMED and "over the 4096 MB budget" in over.reason
    crowded = choose_placement(cuda, nbytes=3 * GB, budget_bytes=4 * GB, free_bytes=5 * GB)  # other jobs hold the rest
    assert crowded.mode == STREAMED and "half of the 5120 MB free" in crowded.reason
    assert choose_placement(cuda, 5 * GB, 4 * GB, num_workers=4).mode == WORKERS
    assert choose_placement(cuda, 0, 0).mode == RESIDENT  # device_data_gb=0 with no data: nothing to stream
    cpu = choose_placement(torch.device("cpu"), 100 * GB, 0)
    assert cpu.mode == RESIDENT and cpu.budget_mb is None  # no budget applies where the data already are
    assert choose_placement(torch.device("cpu"), GB, 0, num_workers=2).mode == WORKERS


@pytest.mark.parametrize("drop_last", [True, False])
def test_training_batches_and_mid_epoch_resume_match_the_dataloader_path(drop_last: bool) -> None:
    data = split()

    def loaders(cls, **extra):
        sampler = EpochShuffleSampler(data, seed=3)
        return cls(data, batch_size=8, sampler=sampler, drop_last=drop_last, **extra), sampler

    reference, ref_sampler = loaders(ResumableLoader, collate_fn=keep_batch)
    device, dev_sampler = loaders(ResumableDeviceLoader, device="cpu")
    assert len(device) == len(reference)
    for epoch in (0, 1):
        ref_sampler.set_epoch(epoch)
        dev_sampler.set_epoch(epoch)
        expected, served = list(reference), list(device)
        assert len(served) == len(expected) == (6 if drop_last else 7)
        for (x, y), (x_ref, y_ref) in zip(served, expected, strict=True):
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref)

    # stopped after 2 batches of epoch 1: a fresh loader restored from its state serves exactly the rest
    iterator = iter(device)
    next(iterator), next(iterator)
    state = device.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    resumed, sampler = loaders(ResumableDeviceLoader, device="cpu")
    sampler.set_epoch(1)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert [y.tolist() for _, y in rest] == [y.tolist() for _, y in expected[2:]]


def test_evaluation_batches_are_views_of_the_split_in_order() -> None:
    data = split(21)
    served = list(DeviceLoader(data, batch_size=8, shuffle=False, device="cpu"))
    expected = list(DataLoader(data, batch_size=8, shuffle=False, collate_fn=keep_batch))
    assert [len(y) for _, y in served] == [8, 8, 5]
    for (x, y), (x_ref, y_ref) in zip(served, expected, strict=True):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    assert served[1][0].untyped_storage().data_ptr() == data.tensors[0].untyped_storage().data_ptr()  # no copy
    dropped = list(DeviceLoader(data, batch_size=7, shuffle=False, drop_last=True, device="cpu"))
    assert [len(y) for _, y in dropped] == [7, 7, 7]


class Tiny(InMemoryDataModule):
    def build_splits(self) -> dict[str, TensorSplit]:
        return {"train": split(40), "val": split(10), "test": split(10)}


def test_a_split_within_the_budget_moves_to_the_device_once_and_batches_are_gathered_there() -> None:
    dm = Tiny(batch_size=8)
    placement = dm.place("meta")  # stands in for a GPU: any non-CPU device gets the budget rule
    assert placement.mode == RESIDENT and placement.device == "meta"
    assert all(t.device.type == "meta" for s in dm.served.values() for t in s.tensors)
    assert dm.splits["train"].tensors[0].device.type == "cpu"  # the host copy stays for the rest of the code
    assert dm.place("meta") is placement  # decided once per device
    x, y = next(iter(DeviceLoader(dm.served["val"], batch_size=4, device="meta")))
    assert x.device.type == "meta" and x.shape == (4, 3, 2, 2)
    loader = ResumableDeviceLoader(dm.served["train"], batch_size=8, sampler=EpochShuffleSampler(dm.served["train"]),
                                   drop_last=True, device="meta")
    x, y = next(iter(loader))
    assert x.device.type == "meta" and x.shape == (8, 3, 2, 2) and y.shape == (8,)


def test_a_split_over_the_budget_stays_on_the_host_and_is_streamed_to_the_device() -> None:
    dm = Tiny(batch_size=8)
    dm.device_budget_bytes = 0  # trainer.device_data_gb=0
    assert dm.place("meta").mode == STREAMED
    assert dm.served["train"].tensors[0].device.type == "cpu"
    loader = DeviceLoader(dm.served["val"], batch_size=4, device="meta")
    batches = list(serve(loader))
    assert [b[0].device.type for b in batches] == ["meta"] * 3 and [len(b[1]) for b in batches] == [4, 4, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned host memory and CUDA streams need a CUDA device")
def test_streamed_batches_on_cuda_equal_the_host_batches() -> None:
    data = split()
    sampler = EpochShuffleSampler(data, seed=1)
    host = list(ResumableLoader(data, batch_size=8, sampler=sampler, collate_fn=keep_batch))
    streamed = list(ResumableDeviceLoader(data, batch_size=8, sampler=sampler, device="cuda"))
    assert all(x.is_cuda for x, _ in streamed)
    for (x, y), (x_ref, y_ref) in zip(streamed, host, strict=True):
        assert torch.equal(x.cpu(), x_ref) and torch.equal(y.cpu(), y_ref)
