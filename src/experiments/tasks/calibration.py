"""How sure a classifier is, and whether it should be: expected calibration error, the reliability diagram and
temperature scaling.

A classifier's confidence is its largest softmax probability. It is *calibrated* when, of the images it gives
confidence p, a fraction p is right. Guo et al. (ICML 2017, "On Calibration of Modern Neural Networks") found
modern networks over-confident and measured it by

* the **expected calibration error** (ECE): the confidences are split into ``M`` equal-width bins over [0, 1];
  with ``B_m`` the images whose confidence falls in bin m, ``ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|``
  (the l1 norm; here ``M = 15`` as in the paper, computed by torchmetrics' ``MulticlassCalibrationError``, whose
  bins are ``[k/M, (k+1)/M)``);
* the **reliability diagram**: accuracy against mean confidence per bin, beside the diagonal a calibrated
  model would lie on, with each bin's image count (an empty bin says nothing);
* **temperature scaling** (§4.2): one scalar ``T > 0`` divides every logit, fitted by minimising the negative
  log-likelihood on the validation split. It leaves every argmax, so the accuracy, unchanged and removes most of
  the miscalibration. Fitted here on ``log T`` (so ``T`` stays positive) by L-BFGS in float64.

The computation is torch-only (:func:`reliability_bins`, :func:`fit_temperature`, :func:`calibration_metrics`);
matplotlib is imported only to draw (:func:`reliability_figure`). Used by the classification task at test end
(``test/ece`` and ``<run dir>/figures/reliability.png``) and by ``python -m experiments.evaluate RUN
--temperature-scale`` (``<run dir>/calibration.json``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from experiments.run.layout import FIGURES

#: equal-width confidence bins and the norm of the ECE (Guo et al. 2017 use 15 bins and the l1 norm)
N_BINS = 15
NORM = "l1"
#: how the ECE is measured, recorded with every calibration result
ECE_METHOD = (f"expected calibration error: {N_BINS} equal-width confidence bins, {NORM} norm (torchmetrics "
              "MulticlassCalibrationError on the softmax's top-1 probability)")
#: how the temperature is fitted, recorded in calibration.json
TEMPERATURE_METHOD = ("one temperature T > 0 dividing the logits, minimising the validation split's NLL over log T "
                      "by full-batch L-BFGS (strong Wolfe) in float64 from T = 1 (Guo et al., ICML 2017, §4.2)")
#: the figure's TensorBoard tag and its file stem under ``<run dir>/figures/``
RELIABILITY_TAG = "test/reliability"
RELIABILITY_FIGURE = "reliability"


@dataclass(frozen=True)
class ReliabilityBins:
    """Per confidence bin (``edges[k] <= confidence < edges[k + 1]``; a confidence of exactly 1 in the last bin):
    how many images fell in it, their accuracy and their mean confidence (both 0 for an empty bin)."""

    edges: list[float]
    counts: list[int]
    accuracy: list[float]
    confidence: list[float]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def ece(self) -> float:
        """``sum_k count_k / n * |accuracy_k - confidence_k|`` over the bins (0 with no images)."""
        total = self.total
        if not total:
            return 0.0
        return sum(c / total * abs(a - p) for c, a, p in zip(self.counts, self.accuracy, self.confidence, strict=True))

    def as_dict(self) -> dict[str, list[Any]]:
        return {"edges": self.edges, "counts": self.counts, "accuracy": self.accuracy, "confidence": self.confidence}


def top1(probabilities: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, correct as 0/1 float) of each row of ``(N, C)`` probabilities."""
    confidence, predicted = probabilities.max(dim=1)
    return confidence.float(), predicted.eq(targets).float()


def reliability_bins(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = N_BINS) -> ReliabilityBins:
    """Bin the top-1 confidences into ``n_bins`` equal-width bins over [0, 1] (torch only, on any device)."""
    confidence = confidence.detach().double().flatten().cpu()
    correct = correct.detach().double().flatten().cpu()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
    counts = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, index, torch.ones_like(confidence))
    hits = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, index, correct)
    sure = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, index, confidence)
    safe = counts.clamp(min=1.0)
    return ReliabilityBins(edges=edges.tolist(), counts=[int(c) for c in counts.tolist()],
                           accuracy=(hits / safe).tolist(), confidence=(sure / safe).tolist())


def expected_calibration_error(logits: torch.Tensor, targets: torch.Tensor, n_bins: int = N_BINS) -> float:
    """The ECE of ``(N, C)`` logits, exactly as the training run's ``test/ece`` measures it (torchmetrics)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probabilities = logits.detach().double().softmax(dim=1)  # probabilities, so torchmetrics never re-normalises
    return float(multiclass_calibration_error(probabilities, targets, logits.shape[1], n_bins=n_bins, norm=NORM,
                                              validate_args=False))


def negative_log_likelihood(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean NLL (cross-entropy, no label smoothing) of ``logits / temperature``."""
    return float(F.cross_entropy(logits.detach().double() / temperature, targets))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 200) -> float:
    """The ``T > 0`` minimising the mean NLL of ``softmax(logits / T)`` (Guo et al. 2017, §4.2).

    Optimised over ``log T``: unconstrained, and a step in it scales T multiplicatively, which suits a parameter
    whose useful values run from ~0.5 to ~10. The NLL is convex in 1/T, so L-BFGS from T = 1 finds the optimum."""
    logits = logits.detach().double().cpu()
    targets = targets.detach().long().cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def calibration_metrics(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                        n_bins: int = N_BINS) -> dict[str, float]:
    """``acc``, ``nll`` and ``ece`` of ``logits / temperature`` (the accuracy does not depend on the temperature)."""
    scaled = logits.detach().double() / temperature
    return {
        "acc": float(scaled.argmax(dim=1).eq(targets).double().mean()) if len(targets) else float("nan"),
        "nll": negative_log_likelihood(scaled, targets),
        "ece": expected_calibration_error(scaled, targets, n_bins),
    }


def temperature_report(val_logits: torch.Tensor, val_targets: torch.Tensor, test_logits: torch.Tensor,
                       test_targets: torch.Tensor, n_bins: int = N_BINS) -> dict[str, Any]:
    """Fit T on the validation split, then the test split's accuracy, NLL and ECE before and after, with both
    splits' reliability bins: the body of ``calibration.json``."""
    temperature = fit_temperature(val_logits, val_targets)
    before = calibration_metrics(test_logits, test_targets, 1.0, n_bins)
    after = calibration_metrics(test_logits, test_targets, temperature, n_bins)

    def bins(scale: float) -> dict[str, list[Any]]:
        probabilities = (test_logits.detach().double() / scale).softmax(dim=1)
        return reliability_bins(*top1(probabilities, test_targets), n_bins).as_dict()

    return {
        "temperature": temperature,
        "test": {"before": before, "after": after},
        "val": {"nll_before": negative_log_likelihood(val_logits, val_targets),
                "nll_after": negative_log_likelihood(val_logits, val_targets, temperature)},
        "reliability": {"before": bins(1.0), "after": bins(temperature)},
        "val_images": len(val_targets), "test_images": len(test_targets),
        "ece": ECE_METHOD, "method": TEMPERATURE_METHOD,
    }


@torch.no_grad()
def collect_logits(network: nn.Module, batches: Iterable[Any], device: torch.device) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
    """(N, C) float32 logits and (N,) labels of every batch on the CPU, the network in evaluation mode."""
    was_training = network.training
    network.eval()
    logits, labels = [], []
    try:
        for batch in batches:
            x, y = batch[0], batch[1]
            logits.append(network(x.to(device)).float().cpu())
            labels.append(y.cpu())
    finally:
        network.train(was_training)
    return torch.cat(logits), torch.cat(labels)


# --------------------------------------------------------------------------------------------------- figure


def reliability_figure(bins: ReliabilityBins, ece: float | None = None, title: str = "test split",
                       after: ReliabilityBins | None = None, after_ece: float | None = None) -> Any:
    """A matplotlib ``Figure``: per bin, the accuracy as a bar over the bin's width, the mean confidence as a
    marker, the diagonal (perfect calibration) and, below, each bin's image count; ``after`` (the bins once
    temperature-scaled) adds outlined bars over its non-empty bins. Empty bins draw nothing: they say nothing.
    Built on a bare ``Figure`` (no pyplot), like the confusion matrix."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 6.0), dpi=110)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
    left, width = bins.edges[:-1], [b - a for a, b in zip(bins.edges[:-1], bins.edges[1:], strict=True)]
    filled = [c > 0 for c in bins.counts]
    top.plot([0, 1], [0, 1], color="0.4", linestyle="--", linewidth=1, label="perfectly calibrated")
    top.bar(left, [a if f else 0.0 for a, f in zip(bins.accuracy, filled, strict=True)], width=width, align="edge",
            color="#4c72b0", edgecolor="white", alpha=0.85, label="accuracy")
    centres = [e + w / 2 for e, w in zip(left, width, strict=True)]
    top.scatter([c for c, f in zip(centres, filled, strict=True) if f],
                [p for p, f in zip(bins.confidence, filled, strict=True) if f],
                color="#dd8452", s=14, zorder=3, label="mean confidence")
    if after is not None:
        kept = [k for k, c in enumerate(after.counts) if c > 0]
        top.bar([after.edges[k] for k in kept], [after.accuracy[k] for k in kept],
                width=[after.edges[k + 1] - after.edges[k] for k in kept], align="edge", fill=False,
                edgecolor="#55a868", linewidth=1.5, label="accuracy after temperature scaling")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in bin")
    heading = f"reliability, {title}" + (f"\nECE {ece:.3f}" if ece is not None else "")
    if after_ece is not None:
        heading += f" → {after_ece:.3f} after temperature scaling"
    top.set_title(heading, fontsize=9)
    top.legend(loc="upper left", fontsize=8, frameon=False)
    bottom.bar(left, bins.counts, width=width, align="edge", color="0.55", edgecolor="white")
    bottom.set_xlabel(f"confidence (top-1 softmax probability, {len(bins.counts)} bins)")
    bottom.set_ylabel("images")
    figure.subplots_adjust(left=0.14, right=0.97, top=0.91, bottom=0.09)
    return figure


def reliability_figure_path(run_dir: str | Path, label: str | None = None) -> Path:
    """``<run dir>/figures/reliability.png`` (training's test split), or ``reliability-<label>.png``."""
    stem = f"{RELIABILITY_FIGURE}-{label}" if label else RELIABILITY_FIGURE
    return Path(run_dir) / FIGURES / f"{stem}.png"
