"""``python -m experiments.train [overrides]`` — train one configuration, or a sweep with ``-m``.

Only Hydra is imported at module level so that ``--help`` and ``--cfg job`` answer in a second;
Lightning is imported when training starts.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from experiments.config import conf_dir
from experiments.validation import ConfigError


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from experiments.training import train

    try:
        record = train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    metrics = record.get("metrics", {})
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if v is not None and k.startswith(("val/", "test/")))
    print(f"run dir: {record['run_dir']}\n{shown}")
    monitor = "val/miou" if record["task"] == "segmentation" else "val/acc"
    return metrics.get(monitor)


if __name__ == "__main__":
    main()
