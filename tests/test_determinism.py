"""Same seed and config on CPU -> identical metrics.json numbers; the batch order depends on (seed, epoch) only."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from experiments.data.sampling import EpochShuffleSampler, ResumableLoader
from experiments.train import train

#: two short epochs, so that the second epoch's order and the schedule are covered too
OVERRIDES = ["data.train_size=128", "trainer.max_epochs=2", "diagnostics=off", "logger=csv"]


def _numbers(run_dir: Path) -> dict:
    saved = json.loads((run_dir / "metrics.json").read_text())
    return {"metrics": saved["metrics"], "history": saved["history"]}


def test_same_seed_same_config_gives_identical_metrics(make_cfg, tmp_path: Path) -> None:
    first = train(make_cfg(OVERRIDES, run_dir=tmp_path / "a"))
    second = train(make_cfg(OVERRIDES, run_dir=tmp_path / "b"))
    assert first["status"] == second["status"] == "completed"
    numbers = _numbers(tmp_path / "a")
    assert numbers == _numbers(tmp_path / "b")  # exact, not approximate
    assert all(v is not None for v in numbers["metrics"].values()) and len(numbers["history"]["epoch"]) == 2


def test_batch_order_depends_only_on_seed_and_epoch() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(100))
    sampler = EpochShuffleSampler(data, seed=7)
    sampler.set_epoch(3)
    epoch3 = list(sampler)
    torch.manual_seed(12345)  # the global RNG plays no part
    torch.rand(1000)
    again = EpochShuffleSampler(data, seed=7)
    again.set_epoch(3)
    assert list(again) == epoch3 and sorted(epoch3) == list(range(100))
    again.set_epoch(4)
    assert list(again) != epoch3
    neighbour = EpochShuffleSampler(data, seed=8)  # seed+epoch schemes would make this equal to seed 7's epoch 4
    neighbour.set_epoch(3)
    assert list(neighbour) != list(again)


def test_ddp_shards_partition_each_epoch() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(10))
    shards = []
    for rank in range(2):
        sampler = EpochShuffleSampler(data, seed=0, num_replicas=2, rank=rank)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_loader_resumes_mid_epoch_with_the_remaining_batches() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(40))

    def loader() -> ResumableLoader:
        sampler = EpochShuffleSampler(data, seed=3)
        sampler.set_epoch(2)
        return ResumableLoader(data, batch_size=8, sampler=sampler)

    full = [b[0].tolist() for b in loader()]
    first = loader()
    iterator = iter(first)
    consumed = [next(iterator)[0].tolist() for _ in range(2)]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 2} and consumed == full[:2]
    resumed = loader()
    resumed.load_state_dict(state)
    assert [b[0].tolist() for b in resumed] == full[2:]
    assert resumed.state_dict() == {"epoch": 2, "batches": 5}
    assert [b[0].tolist() for b in resumed] == full  # the skip applies to the resumed epoch only
