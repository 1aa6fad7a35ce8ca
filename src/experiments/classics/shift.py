"""Test accuracy on test images shifted by a few pixels: the invariance pooling is said to buy.

A trained run is rebuilt from its run dir alone (its config, its ``best.ckpt`` read through the safe
weights-only loader), its own test split is regenerated, and every test image is translated by k pixels
in each of the four directions. The translation is circular (``torch.roll``): the procedural images have a
noise background all the way to the border, so wrapping adds no artificial edge, and nothing leaves the
image. Two numbers per shift: accuracy, and *consistency* (Zhang 2019), the fraction of images whose
predicted class does not change under the shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

SHIFTS = (0, 1, 2, 3, 4)
#: right, left, down, up
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))


@torch.no_grad()
def predict(network: torch.nn.Module, images: torch.Tensor, batch: int = 250) -> torch.Tensor:
    return torch.cat([network(images[i:i + batch]).argmax(dim=1) for i in range(0, len(images), batch)])


@torch.no_grad()
def shifted_scores(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   shifts: Sequence[int] = SHIFTS) -> dict[int, tuple[float, float]]:
    """shift -> (accuracy, consistency with the unshifted prediction), averaged over the four directions."""
    network.eval()
    reference = predict(network, images)
    scores = {}
    for k in shifts:
        accuracy = consistency = 0.0
        moves = DIRECTIONS if k else ((0, 0),)
        for dy, dx in moves:
            moved = torch.roll(images, shifts=(dy * k, dx * k), dims=(-2, -1))
            predicted = predict(network, moved)
            accuracy += (predicted == labels).float().mean().item() / len(moves)
            consistency += (predicted == reference).float().mean().item() / len(moves)
        scores[k] = (accuracy, consistency)
    return scores


def trained(run_dir: Path) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor] | None:
    """A run's network at its best checkpoint (rebuilt from the run dir alone, weights through the safe loader) and
    its own regenerated test split (images, targets); None when the run has no checkpoint."""
    from experiments.build import build_datamodule, build_network
    from experiments.evaluate import load_run_config
    from experiments.run.checkpoints import load_network_weights
    from experiments.run.layout import RunDir

    checkpoint = RunDir(run_dir).best_checkpoint
    if not checkpoint.is_file():
        return None
    cfg = load_run_config(run_dir)
    torch.manual_seed(int(cfg.get("seed", 0)))
    network = build_network(cfg)
    load_network_weights(network, checkpoint, key="best.ckpt")
    network.eval()
    data = build_datamodule(cfg)
    data.setup()
    images, targets = data.splits["test"].tensors[:2]
    return network, images, targets


def evaluate_run(run_dir: Path, shifts: Sequence[int] = SHIFTS) -> dict[int, tuple[float, float]] | None:
    """Shifted-test scores of a classification run's best checkpoint; None when the run has no checkpoint."""
    found = trained(run_dir)
    if found is None:
        return None
    network, images, labels = found
    return shifted_scores(network, images, labels, shifts)
