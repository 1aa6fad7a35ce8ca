"""``pretrain=autoencoder``: the config of the unsupervised run that trains first, inside this run's dir.

Erhan et al. (2010) start a supervised network from an unsupervised one's weights. Here that is a run of its
own: before a run with ``pretrain=autoencoder`` trains, ``train`` trains the ``pretrain.model`` autoencoder
(whose encoder keys interpolate this run's ``model.*``, so the encoders match) with ``pretrain.loss`` for
``pretrain.epochs`` epochs on this run's data (labels unused), with this run's seed, groups, optimiser and
trainer, as a complete run in ``<run dir>/pretrain`` (``RunDir.pretraining``): its own metrics.json,
checkpoints, TensorBoard events and config.yaml, so it can be evaluated, probed and inspected like any run.
This run's encoder then starts from that run's best checkpoint (``run/transfer.py``), exactly as with
``encoder_from=<run dir>/pretrain``.

Resume: a run that was interrupted while pre-training continues the pre-training run (it has its own
last.ckpt); one interrupted later continues from its own checkpoint, which already holds the encoder.
Everything here is OmegaConf: the pre-training config is made without torch.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.naming import group_choices, override_key, task_overrides
from experiments.run.layout import RunDir
from experiments.specs import RECONSTRUCTION_LOSSES

#: keys of this run that the pre-training run replaces, so its record does not claim them
REPLACED = ("model", "loss", "trainer.max_epochs", "pretrain", "probe", "encoder_from")


def wants_pretraining(cfg: DictConfig) -> bool:
    """Whether the config asks for a pre-training run (``pretrain=autoencoder``; ``pretrain=none`` has no model)."""
    node = cfg.get("pretrain")
    return isinstance(node, DictConfig) and isinstance(node.get("model"), DictConfig)


def _replaced(override: str) -> bool:
    key = override_key(override)
    return any(key == k or key.startswith(f"{k}.") for k in REPLACED)


def pretraining_config(cfg: DictConfig) -> DictConfig:
    """This run's config turned into its pre-training run's: ``pretrain.model``/``loss``/``epochs`` in place of
    ``model``/``loss``/``trainer.max_epochs``, the run dir ``<run dir>/pretrain``, and a record of its own
    (choices model=autoencoder and the loss; this run's overrides without the keys it replaces)."""
    node: Any = OmegaConf.to_container(cfg.pretrain, resolve=True)  # ${model.stages}... of *this* run
    container: Any = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra", None)
    run = RunDir(str(cfg.run_dir)).pretraining
    container.update(
        model=node["model"], loss=node["loss"], pretrain={"epochs": 0}, encoder_from=None, probe=False, ckpt_path=None,
        run_dir=str(run.root), resume=bool(cfg.get("resume")) and run.has_started(), print_config=False,
    )
    container["trainer"]["max_epochs"] = node["epochs"]
    loss = RECONSTRUCTION_LOSSES.get(str(node["loss"].get("_target_", "")).rsplit(".", 1)[-1], "custom")
    choices = {**group_choices(cfg), "model": "autoencoder", "loss": loss, "pretrain": "none"}
    overrides = [o for o in task_overrides(cfg) if not _replaced(o)]
    pre = OmegaConf.create(container)
    # the slim Hydra record `config.compose` also leaves: a single run (not a sweep job), its choices and overrides
    pre.hydra = {"mode": "RUN", "runtime": {"choices": choices}, "overrides": {"task": overrides}}
    return pre
