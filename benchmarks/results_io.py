"""One format for every file under ``docs/results/``: the numbers the README quotes, with where they came from.

A figure typed into the README from one run is a promise the next run breaks; a figure copied from a file that a
named command writes can be regenerated, compared and dated. Each file holds

* ``command``: the exact command (from the repository root) that rewrites the file;
* ``date``: when it ran (UTC), and ``machine``: what it ran on, with ``summary``, the phrase the README quotes;
* ``values``: the numbers, each measured one as ``{"median", "min", "max", "n"}`` over its rounds or seeds.

``tests/test_readme_numbers.py`` reads these files and fails when the README's figure is not the file's.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median and range over runs: what the README quotes for a measured figure (never one run's value alone)."""
    if not values:
        raise ValueError("no values to summarise")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(torch_threads: int | None = None) -> dict[str, Any]:
    """What the numbers were measured on; ``summary`` is the one phrase the README quotes after a figure."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch_threads if torch_threads is not None else torch.get_num_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    summary = f"{cores}-core {_cpu_model()}, {threads} torch thread{'s' if threads != 1 else ''}"
    if gpu:
        summary += f", {gpu}"
    return {"summary": summary, "cpu": _cpu_model(), "cores": cores, "torch_threads": threads, "gpu": gpu,
            "system": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}


def write(path: Path, command: str, values: dict[str, Any], *, torch_threads: int | None = None,
          runs: Sequence[str] = ()) -> Path:
    """Write one results file (``runs``: the framework commands the numbers come from, for the reader)."""
    record = {
        "command": command,
        "runs": list(runs),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(torch_threads),
        "values": values,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path}", flush=True)
    return path
