"""Where a run's in-memory splits live while it trains, and the loaders that serve batches from there.

Why: a loader that gathers every batch from host tensors and copies it to the GPU costs a host gather, a
copy from pageable memory (which waits for the device) and Python work per step; for the small networks
of an ablation that is more than the step itself. So, once per run, the data module picks a placement:

* ``resident``: the splits fit ``trainer.device_data_gb`` (and half the free device memory), so they move
  to the training device once; a training batch is one ``index_select`` there, with the epoch's indices
  moved there once per epoch, and an evaluation batch is a slice (a view: no copy at all). On a CPU run the
  data are already where the model is, so this is the mode there too.
* ``streamed``: too large for the device: the splits stay in host memory; each batch is gathered into
  pinned memory and copied asynchronously, on a side stream and one batch ahead, so that the copy of batch
  b+1 overlaps step b.
* ``workers``: ``data.num_workers > 0`` and not resident: torch's own worker processes, which prefetch
  (``prefetch_factor``), with ``pin_memory`` on GPUs.

The order is untouched: the loaders take the epoch's indices from the same seeded, resumable sampler
(``data/sampling.py``) and change only where the gather happens, so every batch holds the same images as
with any other placement, a mid-epoch resume skips exactly the consumed batches, and the ``augment``
group, applied after the transfer, runs on whichever device the batch is on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler

from experiments.data.sampling import ResumableLoader

log = logging.getLogger(__name__)

RESIDENT, STREAMED, WORKERS = "resident", "streamed", "workers"
MB = 1024**2

Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Placement:
    """The decision and its reason, as logged and recorded in ``metrics.json`` (``speed.data``)."""

    mode: str  # resident | streamed | workers
    device: str  # where training batches are consumed
    data_mb: float  # all splits together
    budget_mb: float | None  # the device budget (None on a CPU: no budget applies)
    reason: str

    def describe(self) -> str:
        return f"{self.mode} on {self.device} ({self.data_mb:.1f} MB): {self.reason}"

    def record(self) -> dict[str, Any]:
        return {"placement": self.mode, "device": self.device, "data_mb": round(self.data_mb, 1),
                "budget_mb": None if self.budget_mb is None else round(self.budget_mb, 1), "reason": self.reason}


def split_bytes(splits: Mapping[str, Any]) -> int:
    """Bytes held by every tensor of every split (``TensorSplit.tensors``)."""
    return sum(t.numel() * t.element_size() for split in splits.values() for t in split.tensors)


def choose_placement(device: torch.device, nbytes: int, budget_bytes: int, num_workers: int = 0,
                     free_bytes: int | None = None) -> Placement:
    """Resident when the data fit the budget on an accelerator (or the device is the CPU), else streamed or workers.

    ``free_bytes`` (the device's free memory) keeps a budget set too high from filling the device: resident
    data may take at most half of what is free."""
    data_mb = nbytes / MB
    if device.type == "cpu":
        if num_workers > 0:
            return Placement(WORKERS, str(device), data_mb, None, f"data.num_workers={num_workers} worker processes")
        return Placement(RESIDENT, str(device), data_mb, None, "training on the CPU, where the data already are")
    budget_mb = budget_bytes / MB
    limit = budget_bytes if free_bytes is None else min(budget_bytes, free_bytes // 2)
    if nbytes <= limit:
        why = f"fits the {budget_mb:.0f} MB budget (trainer.device_data_gb)"
        return Placement(RESIDENT, str(device), data_mb, budget_mb, why)
    over = (f"over the {budget_mb:.0f} MB budget (trainer.device_data_gb)" if nbytes > budget_bytes
            else f"over half of the {free_bytes / MB:.0f} MB free on the device")
    if num_workers > 0:
        return Placement(WORKERS, str(device), data_mb, budget_mb,
                         f"{over}: data.num_workers={num_workers} workers prefetch into pinned memory")
    return Placement(STREAMED, str(device), data_mb, budget_mb,
                     f"{over}: pinned host batches copied one ahead (data.num_workers>0 for worker processes)")


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (what this process and others leave), None elsewhere."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


# -- serving batches -------------------------------------------------------------------------------------------


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A copy that does not wait for the device: from pinned memory, asynchronously, when the target is CUDA."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _gathered(loader: DataLoader) -> Iterator[Batch]:
    """This epoch's batches of ``loader.dataset`` (a ``TensorSplit``), gathered where its tensors are.

    The indices are the sampler's (positioned for a resume already), taken once per epoch; an in-order
    sampler gives slices (views) instead of gathers. Host batches bound for a CUDA device are gathered
    straight into pinned memory, ready for an asynchronous copy."""
    tensors: tuple[torch.Tensor, ...] = loader.dataset.tensors  # type: ignore[attr-defined]
    source, target = tensors[0].device, loader.device  # type: ignore[attr-defined]
    pin = source.type == "cpu" and target.type == "cuda"
    size = int(loader.batch_size or 1)
    if isinstance(loader.sampler, SequentialSampler):
        n = len(loader.sampler)
        stops = range(size, n + (1 if loader.drop_last else size), size)  # a partial last batch unless dropped
        for stop in stops:
            views = tuple(t[stop - size: min(stop, n)] for t in tensors)
            yield tuple(v.pin_memory() for v in views) if pin else views
        return
    order = list(iter(loader.sampler))
    index = _to_device(torch.as_tensor(order, dtype=torch.long), source)
    count = len(order) // size if loader.drop_last else -(-len(order) // size)
    for b in range(count):
        rows = index[b * size: (b + 1) * size]
        if pin:
            yield tuple(torch.index_select(t, 0, rows, out=torch.empty((len(rows), *t.shape[1:]), dtype=t.dtype,
                                                                        pin_memory=True)) for t in tensors)
        else:
            yield tuple(t.index_select(0, rows) for t in tensors)


def streamed(batches: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    """Batches moved to ``device`` one batch ahead: on CUDA, copies on a side stream that the consumer's stream
    waits for, so the copy of the next batch overlaps the current step; elsewhere a plain copy."""
    if device.type != "cuda":
        for batch in batches:
            yield tuple(t.to(device) for t in batch)
        return
    side = torch.cuda.Stream(device)
    main = torch.cuda.current_stream(device)

    def send(batch: Batch) -> Batch:
        with torch.cuda.stream(side):
            return tuple(t.to(device, non_blocking=True) for t in batch)

    def receive(moved: Batch) -> Batch:
        main.wait_stream(side)
        for t in moved:
            t.record_stream(main)  # allocated on the side stream, used on the main one
        return moved

    ahead: Batch | None = None
    for batch in batches:
        moved = send(batch)
        if ahead is not None:
            yield receive(ahead)
        ahead = moved
    if ahead is not None:
        yield receive(ahead)


def serve(loader: DataLoader) -> Iterator[Batch]:
    """The batches of a device loader: in place when the split is on its device, else streamed there."""
    batches = _gathered(loader)
    if loader.dataset.tensors[0].device == loader.device:  # type: ignore[attr-defined]
        return batches
    return streamed(batches, loader.device)  # type: ignore[attr-defined]


class DeviceLoader(DataLoader):
    """Evaluation batches of a ``TensorSplit`` delivered on ``device`` (slices when in order; no worker processes).

    ``__init__`` takes DataLoader's arguments plus ``device``, so Lightning can re-create it with its own
    sampler (DDP evaluation) and keep the device."""

    def __init__(self, dataset: Any, *args: Any, device: torch.device | str = "cpu", **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        return serve(self)


class ResumableDeviceLoader(ResumableLoader):
    """Training batches of a ``TensorSplit`` delivered on ``device``, in the resumable sampler's order."""

    def __init__(self, dataset: Any, *args: Any, device: torch.device | str = "cpu", **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.device = torch.device(device)

    def _batches(self) -> Iterator[Batch]:
        return serve(self)
