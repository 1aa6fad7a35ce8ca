"""A linear probe: how much class information a frozen feature extractor's output holds, read out linearly.

Pure tensors (no Lightning, no data modules): features in, a fitted classifier and accuracies out. The probe
is multinomial logistic regression on standardised features (each feature centred and scaled by its
training-split mean and standard deviation, so that one L2 strength suits any encoder's feature scale), with
an L2 penalty ``l2/2 * ||W||^2`` on the weights (not the bias), fitted on the whole training split at once
by L-BFGS with a strong-Wolfe line search, in float64, from zero weights. The objective is strictly convex,
so the fit has one optimum and depends on no seed: the same features give the same probe. This is the
linear evaluation protocol of representation learning (features frozen, only a linear map learnt).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: default L2 strength: enough to keep separable features' weights finite, small against the data term
L2 = 1e-3
#: L-BFGS iterations: converges well within this on a few thousand samples of a few hundred features
MAX_ITER = 200


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe: ``logits = ((features - mean) / std) @ weight.T + bias``."""

    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor  # (classes,)
    mean: torch.Tensor  # (features,)
    std: torch.Tensor  # (features,)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        z = (features.to(self.weight.dtype) - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of samples whose largest logit is their label."""
        return float((self.logits(features).argmax(dim=1) == labels.to(self.weight.device)).double().mean())


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = L2, max_iter: int = MAX_ITER,
) -> LinearProbe:
    """Fit the probe on (N, D) features and (N,) integer labels; see the module docstring for the objective."""
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"expected (N, D) features and (N,) labels, got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    if l2 < 0:
        raise ValueError(f"the L2 strength must be >= 0, got {l2}")
    x = features.detach().double()
    y = labels.detach().long().to(x.device)
    mean = x.mean(dim=0)
    std = x.std(dim=0).clamp_min(1e-8)  # a constant feature carries nothing: scaled to zero, not to infinity
    z = (x - mean) / std
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return LinearProbe(weight.detach(), bias.detach(), mean, std)
