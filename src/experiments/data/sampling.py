"""Training-batch order that a checkpoint can reproduce: shuffled by (seed, epoch) only, restartable mid-epoch.

Why: a run stopped mid-epoch (SIGINT/SIGTERM) and resumed must see exactly the batches the
uninterrupted run would have seen. ``DataLoader(shuffle=True)`` draws its permutation from the global
torch RNG, so the order of epoch ``e`` depends on everything that consumed random numbers before, and
Lightning has no way to skip the batches already trained on. Here:

* :class:`EpochShuffleSampler` permutes with a generator seeded from ``(seed, epoch)`` alone and shards
  the permutation across DDP processes itself; being a ``DistributedSampler``, Lightning calls its
  ``set_epoch`` every epoch and does not replace it under DDP.
* :class:`ResumableLoader` counts the batches handed to the training loop and implements Lightning's
  stateful-loader protocol (``state_dict``/``load_state_dict``, saved with the fit loop), so a restart
  in the middle of epoch ``e`` skips exactly the batches that were consumed. Lightning's fetcher does
  not prefetch from sized loaders, so "handed out" equals "trained on".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed that differs for every (seed, epoch) pair; tuple hashing of ints is stable across runs."""
    return hash((int(seed), int(epoch))) & 0x7FFF_FFFF_FFFF_FFFF


class EpochShuffleSampler(DistributedSampler):
    """Shuffle indices by ``(seed, epoch)``; this process's shard of them; optionally from position ``start``.

    Unlike ``DistributedSampler``'s ``seed + epoch``, nearby seeds do not share epochs (seed 1's first
    epoch would otherwise be seed 0's second).
    """

    def __init__(self, dataset: Dataset, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0  # items of this epoch's shard to skip on the next iteration (set by ResumableLoader)

    def order(self) -> list[int]:
        """This process's indices for the current epoch, before skipping."""
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        n = len(self.dataset)  # type: ignore[arg-type]
        indices = torch.randperm(n, generator=generator).tolist()
        if self.total_size > n:  # pad so that every process gets the same number of items, as DistributedSampler
            indices = (indices * math.ceil(self.total_size / n))[: self.total_size]
        return indices[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.order()[start:])


class ResumableLoader(DataLoader):
    """A ``DataLoader`` whose position within the epoch is part of the checkpoint (Lightning's ``_Stateful``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.served = 0  # batches handed out in the current epoch
        self._resume: dict[str, int] | None = None

    def _epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # A generator: nothing runs until the first batch is requested, i.e. after Lightning's set_epoch.
        skip = 0
        if self._resume is not None and self._resume.get("epoch") == self._epoch():
            skip = int(self._resume.get("batches", 0))
        self._resume = None
        if skip and hasattr(self.sampler, "start"):
            self.sampler.start = skip * int(self.batch_size or 1)
        else:
            skip = 0
        self.served = skip
        for batch in self._batches():
            self.served += 1
            yield batch

    def _batches(self) -> Iterator[Any]:
        """This epoch's batches once the sampler is positioned; ``data/placement.py`` serves them from the device."""
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch(), "batches": self.served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = dict(state_dict)
