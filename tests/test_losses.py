"""Losses match their formulas for classification (N, C) and segmentation (N, C, H, W) logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from experiments.tasks.losses import CrossEntropy, FocalLoss, QuadraticCost


def test_quadratic_cost_is_half_mean_squared_norm() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 2])
    a = logits.softmax(1)
    y = torch.eye(3)[target]
    expected = ((y - a) ** 2).sum(1).sum() / (2 * 2)
    assert QuadraticCost()(logits, target).item() == pytest.approx(expected.item())


def test_quadratic_cost_per_pixel() -> None:
    logits = torch.randn(2, 4, 3, 3)
    target = torch.randint(0, 4, (2, 3, 3))
    flat_logits = logits.permute(0, 2, 3, 1).reshape(-1, 4)
    assert QuadraticCost()(logits, target).item() == pytest.approx(
        QuadraticCost()(flat_logits, target.reshape(-1)).item(), rel=1e-6
    )


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    logits, target = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert FocalLoss(gamma=0)(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    assert FocalLoss(gamma=2)(logits, target) < FocalLoss(gamma=0)(logits, target)


def test_cross_entropy_label_smoothing() -> None:
    logits, target = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert CrossEntropy(0.1)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=0.1).item()
    )
