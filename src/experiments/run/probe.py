"""What a run's encoder is worth to a classifier: the linear probe on its data, and ``probe.json``.

The encoder (``network.encoder``, the shared ``Encoder`` of cnn, fcn, dilated and autoencoder) is frozen and
run in evaluation mode over the training and test splits; its last feature map, global-average-pooled, is one
feature vector per image (as many features as the last stage has channels). A linear classifier is fitted on
the training split's features and labels (:func:`~experiments.analysis.linear_probe.fit_linear_probe`:
multinomial logistic regression, L-BFGS, deterministic) and scored on the test split. The loaders are the data
module's own, without the ``augment`` group (that acts in the Lightning hook, which is not called here), so
the probe sees the images as validation does; the training loader drops a last partial batch as in training
(``train_images`` in probe.json says how many were used). The probe needs a class label per image: segmentation data has
none, which is one sentence.

Used twice: inside training (``probe=true``: after the test, on the tested weights; ``test/probe_acc`` joins
the run's metrics) and afterwards (``python -m experiments.evaluate RUN --probe``). Both write
``<run dir>/probe.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.analysis.linear_probe import L2, MAX_ITER, fit_linear_probe
from experiments.errors import ConfigError
from experiments.run.layout import RunDir, write_json
from experiments.specs import ENCODER_MODELS

#: how the probe is fitted, recorded with its result
SOLVER = (f"multinomial logistic regression on standardised global-average-pooled encoder features, L2 {L2} on "
          f"the weights, full-batch L-BFGS (strong Wolfe, at most {MAX_ITER} iterations) from zero, float64")


def encoder_output(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's last feature map (the stage walker's last output: a max-pool that records indices for
    unpooling gives its values only)."""
    return encoder.forward_stages(x).outputs[-1]


@torch.no_grad()
def pooled_features(
    encoder: nn.Module, batches: Iterable[Any], device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) global-average-pooled features and (N,) labels of every batch, on the CPU."""
    features, labels = [], []
    for batch in batches:
        x, y = batch[0], batch[1]
        if y.ndim != 1 or y.is_floating_point():
            raise ConfigError("data.task", "segmentation" if y.ndim == 3 else "unlabelled",
                              "the probe fits one class label per image, and this data has none",
                              "probe on classification data, e.g. data=shapes or a torchvision set")
        features.append(encoder_output(encoder, x.to(device)).mean(dim=(2, 3)).float().cpu())
        labels.append(y.cpu())
    return torch.cat(features), torch.cat(labels)


def probe_network(network: nn.Module, datamodule: Any) -> dict[str, Any]:
    """Fit the probe on the training split, score it on the training and test splits; returns probe.json's body."""
    encoder = getattr(network, "encoder", None)
    if not isinstance(encoder, nn.Module) or not hasattr(encoder, "forward_stages"):
        encoders = f"{', '.join(ENCODER_MODELS[:-1])} or {ENCODER_MODELS[-1]}"
        raise ConfigError("probe", "true", f"the probe reads the shared encoder, which {type(network).__name__} "
                          "does not have", f"probe a run of model={encoders}")
    for stage in ("fit", "test"):
        datamodule.setup(stage)
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        train_x, train_y = pooled_features(encoder, datamodule.train_dataloader(), device)
        test_x, test_y = pooled_features(encoder, datamodule.test_dataloader(), device)
    finally:
        network.train(was_training)
    classes = int(getattr(datamodule, "num_classes", 0) or int(train_y.max()) + 1)
    probe = fit_linear_probe(train_x, train_y, classes)
    accuracy = {"train/probe_acc": probe.accuracy(train_x, train_y), "test/probe_acc": probe.accuracy(test_x, test_y)}
    return {
        "metrics": accuracy,
        "features": int(train_x.shape[1]), "classes": classes,
        "train_images": len(train_y), "test_images": len(test_y), "solver": SOLVER,
    }


def save_probe(run_dir: str | Path, result: dict[str, Any], checkpoint: str | Path | None) -> Path:
    """Write ``<run dir>/probe.json`` (which weights were probed, and when) and return its path."""
    path = RunDir(run_dir).probe
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(path, {"run_dir": str(run_dir), "checkpoint": str(checkpoint) if checkpoint else None, **result,
                      "probed_at": stamp})
    return path
