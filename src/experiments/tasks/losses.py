"""Losses for the ``loss`` group. Each takes raw logits (N, C, ...) and integer targets (N, ...).

Working on logits of any trailing shape lets the same loss serve classification (N, C) and
segmentation (N, C, H, W) alike. Every loss takes ``ignore_index`` (``conf/loss`` sets it to the data's, e.g.
VOC's 255 borders; PyTorch's -100 means none): those targets add nothing to the loss or its gradient, and
means are over the remaining ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _one_hot(target: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """(N, ...) int -> (N, C, ...) float, the class axis second as in the logits."""
    return F.one_hot(target, num_classes).movedim(-1, 1).to(like.dtype)


def _labelled(target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets with the ignored ones replaced by class 0, so that they can index; where the labels are real)."""
    keep = target != ignore_index
    return torch.where(keep, target, 0), keep


def _mean_over(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``keep``; 0 when nothing is kept (a batch of unlabelled pixels teaches nothing)."""
    return torch.where(keep, values, 0).sum() / keep.sum().clamp_min(1)


class CrossEntropy(nn.CrossEntropyLoss):
    """Softmax + negative log-likelihood, with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int | None = -100) -> None:
        super().__init__(label_smoothing=label_smoothing, ignore_index=-100 if ignore_index is None else ignore_index)


class QuadraticCost(nn.Module):
    """The quadratic (MSE) cost C = 1/(2n) sum_x ||y(x) - a(x)||^2 on softmax outputs and one-hot targets.

    n counts samples (pixels, for segmentation); the squared norm is taken over the class axis. Its
    gradient through a saturated output unit is small, which is the lesson of the mse-vs-ce ablation.
    """

    def __init__(self, ignore_index: int | None = -100) -> None:
        super().__init__()
        self.ignore_index = -100 if ignore_index is None else ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target, keep = _labelled(target, self.ignore_index)
        probs = logits.softmax(dim=1)
        sq = (probs - _one_hot(target, logits.shape[1], probs)).pow(2).sum(dim=1)
        return 0.5 * _mean_over(sq, keep)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): -alpha_t (1 - p_t)^gamma log p_t, averaged over samples."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, ignore_index: int | None = -100) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.alpha = alpha
        self.ignore_index = -100 if ignore_index is None else ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target, keep = _labelled(target, self.ignore_index)
        log_p = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1 - log_p.exp()).pow(self.gamma)) * log_p
        if self.alpha is not None:
            loss = loss * self.alpha
        return _mean_over(loss, keep)


class DiceLoss(nn.Module):
    """Soft Dice loss (Milletari et al. 2016): 1 - mean_c (2 sum p_c y_c + s) / (sum p_c + sum y_c + s).

    p = softmax(logits), y = one-hot targets; the sums run over the batch and all pixels, so each class
    weighs the same however few pixels it covers — which is why it suits segmentation with a dominant
    background, and why it tracks mean IoU more closely than cross-entropy does. ``smooth`` keeps a
    class that is absent from both prediction and target at zero loss instead of 0/0.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int | None = -100) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"dice smooth must be >= 0, got {smooth}")
        self.smooth = smooth
        self.ignore_index = -100 if ignore_index is None else ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target, keep = _labelled(target, self.ignore_index)
        keep = keep.unsqueeze(1)  # an ignored pixel counts in neither the prediction's nor the target's area
        probs = torch.where(keep, logits.softmax(dim=1), 0)
        onehot = torch.where(keep, _one_hot(target, logits.shape[1], probs), 0)
        dims = [0, *range(2, logits.dim())]  # everything but the class axis
        overlap = (probs * onehot).sum(dims)
        total = probs.sum(dims) + onehot.sum(dims)
        return 1 - ((2 * overlap + self.smooth) / (total + self.smooth)).mean()
