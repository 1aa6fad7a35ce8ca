"""The run-level speed settings of ``conf/trainer``, resolved once per run, applied before anything is built.

Why threads are a setting: PyTorch starts one intra-op thread per core, which is right for one run alone
on a machine and several times too slow when other processes want the same cores (OpenMP threads spin
while they wait for each other). A packed sweep (``hydra/launcher=packed``: k jobs at once) therefore gives
each job ``cores // k`` threads, and a job learns k from its own Hydra config (``hydra.launcher.n_jobs``).
On a GPU the same k caps each job's share of the device memory, so that k caching allocators cannot crowd
each other out, and splits the budget for device-resident data.

``auto`` rules, in order: ``trainer.threads`` given -> that; ``$OMP_NUM_THREADS`` set (by the user, or by
joblib in its workers) -> that; else the cores this process may use (its CPU affinity) divided by
``packed_jobs``, at least one.

Torch is imported only in :meth:`SpeedSettings.apply`, so resolving and recording stay cheap.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.specs import SPEED_KEYS

log = logging.getLogger(__name__)

#: defaults for run configs written before these settings existed (a resumed run keeps its own config)
DEFAULTS: dict[str, Any] = {
    "threads": "auto", "packed_jobs": "auto", "compile": "off", "channels_last": False, "device_data_gb": 4.0,
}
#: launchers whose ``n_jobs`` jobs of a sweep run at the same time on this machine
PACKING_LAUNCHERS = ("hydra_plugins.hydra_joblib_launcher",)
GB = 1024**3


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask: a container's or taskset's limit), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def launcher_jobs(hydra_node: Any = None) -> int:
    """How many jobs of this sweep run at once here: ``hydra.launcher.n_jobs`` of a joblib-based launcher (-1: one
    per core, as joblib reads it), else 1 (a single run, or a launcher that runs jobs one after another)."""
    if hydra_node is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return 1
        hydra_node = HydraConfig.get()
    mode = str(OmegaConf.select(hydra_node, "mode", default="") or "")
    launcher = OmegaConf.select(hydra_node, "launcher", default=None)
    if not mode.endswith("MULTIRUN") or not isinstance(launcher, DictConfig):
        return 1
    if not str(launcher.get("_target_", "")).startswith(PACKING_LAUNCHERS):
        return 1
    n_jobs = launcher.get("n_jobs")
    if isinstance(n_jobs, int) and n_jobs < 0:  # joblib: -1 is every core, -2 all but one ...
        return max(1, usable_cores() + 1 + n_jobs)
    return max(1, int(n_jobs)) if isinstance(n_jobs, int) else 1


def compile_mode(value: Any) -> str:
    """``trainer.compile`` as one of ``COMPILE_MODES`` (YAML reads a bare ``off`` as false)."""
    return "off" if value is False or value is None else str(value)


@dataclass(frozen=True)
class SpeedSettings:
    """The resolved settings; :meth:`record` is what ``metrics.json`` keeps under ``speed``."""

    threads: int
    packed_jobs: int
    compile: str
    channels_last: bool
    device_data_gb: float
    precision: str
    cudnn_benchmark: bool | None

    @classmethod
    def from_config(cls, cfg: DictConfig, hydra_node: Any = None) -> SpeedSettings:
        """Resolve ``auto`` values from the config, the environment and (for ``packed_jobs``) Hydra's launcher."""
        trainer = cfg.get("trainer") if isinstance(cfg.get("trainer"), DictConfig) else OmegaConf.create({})
        value = {key: trainer.get(key, default) for key, default in DEFAULTS.items()}
        if hydra_node is None and isinstance(cfg.get("hydra"), DictConfig) and "launcher" in cfg.hydra:
            hydra_node = cfg.hydra
        packed = launcher_jobs(hydra_node) if value["packed_jobs"] == "auto" else int(value["packed_jobs"])
        threads = value["threads"]
        if threads == "auto":
            env = os.environ.get("OMP_NUM_THREADS", "")
            threads = int(env) if env.isdigit() and int(env) > 0 else max(1, usable_cores() // packed)
        return cls(
            threads=int(threads), packed_jobs=packed, compile=compile_mode(value["compile"]),
            channels_last=bool(value["channels_last"]), device_data_gb=float(value["device_data_gb"]),
            precision=str(trainer.get("precision", "32-true")), cudnn_benchmark=trainer.get("benchmark"),
        )

    def device_budget_bytes(self) -> int:
        """Bytes of in-memory data allowed on the device: ``device_data_gb``, and no more than half of this job's
        share of the device when ``packed_jobs`` share it (the rest is for weights, activations and workspace)."""
        budget = int(self.device_data_gb * GB)
        if self.packed_jobs > 1:
            import torch

            if torch.cuda.is_available():
                total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
                budget = min(budget, total // self.packed_jobs // 2)
        return budget

    def apply(self, accelerator: str = "auto") -> None:
        """Set torch's threads and, when packed jobs share a GPU, this job's cap on its memory."""
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        if on_gpu and self.packed_jobs > 1:
            # a cap on this process's caching allocator, not a reservation: k jobs cannot starve each other
            torch.cuda.set_per_process_memory_fraction(1.0 / self.packed_jobs)
        log.info("speed: %s", self.describe())

    def describe(self) -> str:
        return (f"{self.threads} thread(s), {self.packed_jobs} packed job(s), compile={self.compile}, "
                f"channels_last={self.channels_last}, precision={self.precision}, "
                f"cudnn.benchmark={self.cudnn_benchmark}")

    def record(self) -> dict[str, Any]:
        return asdict(self)


def lightning_args(trainer: DictConfig) -> DictConfig:
    """The ``trainer`` node without the speed keys: what ``lightning.Trainer`` is instantiated from."""
    values = OmegaConf.to_container(trainer, resolve=True)  # resolved here: ${run_dir} points outside the node
    assert isinstance(values, dict)
    return OmegaConf.create({k: v for k, v in values.items() if k not in SPEED_KEYS})
