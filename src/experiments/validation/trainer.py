"""Rules of the ``trainer`` group: epochs, accelerator, devices, precision and DDP; this project's speed settings
(threads, packed jobs, compile, channels-last, device data budget); Lightning's debug switches (set by the ``debug``
group, or by hand), which would otherwise surface from Lightning only at the end of the first epoch.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError
from experiments.specs import COMPILE_MODES
from experiments.validation.checks import (
    as_typed,
    device_count,
    hydra_mode,
    is_int,
    is_number,
    listing,
    positive_int,
    require,
    strategy_name,
    target_of,
)
from experiments.validation.registry import rule


@rule("trainer")
def _check_epochs(cfg: DictConfig) -> None:
    """A whole number of epochs; 0 is allowed: no training, the network is tested (and probed) as it starts."""
    positive_int(cfg, "trainer.max_epochs", 0)


_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


_PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")


@rule("trainer")
def _check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    accel = trainer.get("accelerator", "auto")
    require(accel in _ACCELERATORS, "trainer.accelerator", accel, f"known accelerators are {', '.join(_ACCELERATORS)}",
            "use trainer.accelerator=auto, or pick trainer=cpu or trainer=gpu")
    devices = trainer.get("devices", "auto")
    count = device_count(devices)
    require(devices in ("auto", -1, "-1") or (count is not None and count >= 1), "trainer.devices", devices,
            "devices is a positive count, -1 or auto for all, or a list of device indices",
            "use e.g. trainer.devices=1")
    precision = str(trainer.get("precision", "32-true"))
    require(precision in _PRECISIONS, "trainer.precision", precision, f"known precisions are {', '.join(_PRECISIONS)}",
            "use trainer.precision=32-true (CPU) or bf16-mixed (GPU)")
    if accel == "cpu":
        require(precision not in ("16-mixed", "16"), "trainer.precision", precision,
                "Lightning runs float16 mixed precision on GPUs only", "use trainer.precision=bf16-mixed or 32-true")
    clip = trainer.get("gradient_clip_val")
    require(clip is None or (is_number(clip) and clip >= 0), "trainer.gradient_clip_val", clip,
            "a gradient norm limit cannot be negative", "use e.g. trainer.gradient_clip_val=1.0, or null for none")
    positive_int(cfg, "trainer.log_every_n_steps")
    strategy = strategy_name(trainer)
    if not strategy.startswith("ddp"):
        return
    require(count is None or count >= 2, "trainer.devices", devices,
            "DDP starts one process per device, so one device only adds the start-up cost",
            "use trainer.devices=2 or more, or trainer=cpu / trainer=gpu for a single device")
    backend = OmegaConf.select(trainer, "strategy.process_group_backend", default=None) \
        if isinstance(trainer.get("strategy"), DictConfig) else None
    if accel == "cpu":
        require(backend != "nccl", "trainer.strategy.process_group_backend", backend, "NCCL runs on GPUs only",
                "use trainer.strategy.process_group_backend=gloo (as trainer=ddp_cpu does)")
    if hydra_mode(cfg) == "MULTIRUN":
        node = trainer.get("strategy")
        keys = ("trainer.strategy._target_", "trainer.strategy") if isinstance(node, DictConfig) else \
            ("trainer.strategy", "trainer.strategy._target_")
        key, value, picked = as_typed(cfg, "trainer", keys, target_of(node) or strategy)
        raise ConfigError(key, value, _DDP_IN_SWEEP + picked, _DDP_IN_SWEEP_FIX)


def ddp_in_sweep(typed: list[str], composed_strategy: str) -> str | None:
    """The refusal of a DDP trainer in a ``-m`` sweep, found before any job starts (the sweep's first Hydra
    callback): ``typed`` are the command line's overrides (a swept ``trainer=cpu,ddp_cpu`` counts when any value
    is DDP) and ``composed_strategy`` the strategy the sweep's shared config resolves to. None when there is none.

    The same mistake is refused per job by :func:`_check_trainer`; finding it here turns a sweep of failed jobs
    into one sentence and exit 2."""
    from experiments.naming import override_key, override_value

    for override in typed:
        key, value = override_key(override), str(override_value(override))
        values = [v.strip() for v in value.split(",")]
        if (key == "trainer" and any(v.startswith("ddp") for v in values)) or (
                key in ("trainer.strategy", "trainer.strategy._target_")
                and any("ddp" in v.lower() for v in values)):
            return str(ConfigError(key, value, _DDP_IN_SWEEP, _DDP_IN_SWEEP_FIX))
    if composed_strategy.startswith("ddp"):
        return str(ConfigError("trainer.strategy", composed_strategy, _DDP_IN_SWEEP, _DDP_IN_SWEEP_FIX))
    return None


_DDP_IN_SWEEP = ("Lightning starts the other DDP processes by re-running the command line, which inside a -m sweep "
                 "would re-launch the whole sweep")
_DDP_IN_SWEEP_FIX = "run each DDP configuration as a single run, or sweep with trainer=cpu / trainer=gpu"


#: what ``trainer.accelerator`` takes to mean a GPU (``gpu``: CUDA, or Apple's MPS on a Mac)
_GPU_ACCELERATORS = ("gpu", "cuda")


@rule("trainer", machine=True)
def _check_gpu_present(cfg: DictConfig) -> None:
    """A GPU trainer (``trainer=gpu``, ``trainer=ddp``, ``trainer.accelerator=gpu|cuda``) on a machine without one
    would fail inside Lightning's Trainer with its own exception, after the config is printed and the data built.
    Answered without importing torch (:func:`gpu_available`), the question Lightning asks first."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    accel = str(trainer.get("accelerator", "auto"))
    if accel not in _GPU_ACCELERATORS or gpu_available(accel):
        return
    key, value, picked = as_typed(cfg, "trainer", ("trainer.accelerator",), accel)
    ddp = strategy_name(trainer).startswith("ddp")
    raise ConfigError(key, value, f"it trains on {'every' if ddp else 'a'} GPU and this machine has none that CUDA "
                      f"can see{picked}", "use trainer=ddp_cpu for DDP on the CPU, or trainer=cpu" if ddp else
                      "use trainer=cpu (or trainer.accelerator=auto, which takes a GPU where there is one)")


def gpu_available(accelerator: str = "gpu") -> bool:
    """Whether ``trainer.accelerator=<accelerator>`` would find a GPU, without importing torch where it is not loaded.

    Mirrors what Lightning asks (``torch.cuda.is_available()``, NVML-based as Lightning sets it): torch itself when it
    is already imported; else False for a CPU-only build of torch (its ``version.py`` read as text), for
    ``CUDA_VISIBLE_DEVICES`` hiding every device, and for a machine whose NVIDIA management library finds no device
    or that has no NVIDIA driver at all. True wherever only torch could tell (an MPS Mac for ``gpu``, a ROCm build, a
    driver without NVML), so a machine that has a GPU is never refused: Lightning decides there, as before."""
    import os
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        mps = accelerator == "gpu" and torch.backends.mps.is_available()
        return bool(torch.cuda.is_available() or mps)
    if accelerator == "gpu" and sys.platform == "darwin":
        return True
    build = _torch_build()
    if build.get("hip"):
        return True
    if not build.get("cuda"):
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return False
    count = _nvml_device_count()
    return count is None or count > 0


def _torch_build() -> dict[str, str | None]:
    """``cuda`` and ``hip`` of the installed torch's ``version.py``, read as text (importing torch costs seconds);
    ``{"cuda": "?"}`` when the file cannot be read, so the caller does not refuse on a guess."""
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("torch")
    try:
        text = (Path(spec.origin).parent / "version.py").read_text() if spec and spec.origin else ""
    except OSError:
        text = ""
    if not text:
        return {"cuda": "?"}
    found = dict(re.findall(r"^(cuda|hip)\b[^=\n]*=\s*'?([^'\n]*)'?\s*$", text, re.MULTILINE))
    return {name: None if found.get(name, "None") == "None" else found[name] for name in ("cuda", "hip")}


def _nvml_device_count() -> int | None:
    """NVIDIA devices as the driver's management library counts them (what torch's NVML-based check reads); 0 when
    there is no NVIDIA driver at all (neither NVML nor the CUDA driver library loads); None when NVML is missing but
    the driver is not, which only the CUDA runtime could answer."""
    import ctypes
    import sys

    windows = sys.platform.startswith("win")
    try:
        nvml = ctypes.CDLL("nvml.dll" if windows else "libnvidia-ml.so.1")
    except OSError:
        try:
            ctypes.CDLL("nvcuda.dll" if windows else "libcuda.so.1")
        except OSError:
            return 0
        return None
    count = ctypes.c_uint(0)
    if nvml.nvmlInit_v2() != 0:  # a driver/library mismatch: torch falls back to the CUDA runtime, so do not guess
        return None
    try:
        found = nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0
    finally:
        nvml.nvmlShutdown()
    return int(count.value) if found else None


@rule("trainer")
def _check_speed(cfg: DictConfig) -> None:
    """The speed settings of ``conf/trainer`` (experiments.speed): threads, packed jobs, compile, layout, data size."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    for key in ("threads", "packed_jobs"):
        value = trainer.get(key, "auto")
        require(value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                f"trainer.{key}", value, "it is auto or a whole number >= 1", f"use trainer.{key}=auto or e.g. 2")
    mode = trainer.get("compile", "off")
    require(mode is False or mode in COMPILE_MODES, "trainer.compile", mode,
            f"the choices are {listing(COMPILE_MODES, 'or')}", "use e.g. trainer.compile=reduce-overhead")
    layout = trainer.get("channels_last", False)
    require(isinstance(layout, bool), "trainer.channels_last", layout, "it is true or false",
            "use trainer.channels_last=true (NHWC convolutions) or false")
    budget = trainer.get("device_data_gb", 4.0)
    require(is_number(budget) and budget >= 0, "trainer.device_data_gb", budget,
            "it is the gigabytes of data allowed on the GPU", "use e.g. trainer.device_data_gb=4, or 0 to stream")


#: ``trainer.profiler`` names that ``build.build_profiler`` turns into Lightning's profilers
PROFILERS = ("simple", "advanced", "pytorch")


def _fraction_or_count(value: Any) -> bool:
    """A number of batches, or a fraction of them in [0, 1]."""
    return is_int(value, 0) or (isinstance(value, float) and 0 <= value <= 1)


@rule("trainer")
def _check_debug_switches(cfg: DictConfig) -> None:
    """Lightning's debugging switches (set by the ``debug`` group, or by hand)."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    profiler = trainer.get("profiler")
    require(profiler is None or profiler in PROFILERS or isinstance(profiler, DictConfig), "trainer.profiler",
            profiler, f"the profilers are {', '.join(PROFILERS)}", "use debug=profiler, or trainer.profiler=pytorch")
    fdr = trainer.get("fast_dev_run", False)
    require(isinstance(fdr, bool) or is_int(fdr, 0), "trainer.fast_dev_run", fdr,
            "it is true or a number of batches", "use debug=fdr (one batch of each split)")
    for key in ("overfit_batches", "limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer.get(key)
        require(value is None or _fraction_or_count(value), f"trainer.{key}", value,
                "it is a number of batches or a fraction of them in [0, 1]", f"use e.g. trainer.{key}=4")
