"""Loss-landscape slices and Hessian curvature of a network at given weights, without Lightning.

Everything here evaluates a model *functionally*: ``torch.func.functional_call`` swaps a dict of parameter
tensors into the module for one call, so a slice or an interpolation never writes into the model's own
parameters (a landscape diagnostic must leave the trained run exactly as it found it). BatchNorm's mode is the
caller's: in eval mode it uses the run's running statistics, which makes the loss a fixed function of the weights
(in train mode it would depend on the batch and update the running statistics).

References:

- Goodfellow, Vinyals & Saxe (ICLR 2015), "Qualitatively characterizing neural network optimization problems":
  the loss along the straight line from the initial to the final weights (:func:`interpolate`).
- Li, Xu, Taylor, Studer & Goldstein (NeurIPS 2018), "Visualizing the Loss Landscape of Neural Nets", §4:
  filter-normalised random directions (:func:`filter_normalized_direction`), 1D/2D slices, and (§7) the
  ``|lambda_min / lambda_max|`` convexity measure (:func:`curvature`).
- Pearlmutter (1994): exact Hessian-vector products at the cost of about two gradients (:func:`hvp_operator`).
- Lanczos (1950), with full reorthogonalisation (Golub & Van Loan, Matrix Computations, §10.1 / §10.3), for the
  extreme eigenvalues (:func:`top_eigenvalues`, :func:`min_eigenvalue`).
- Hutchinson (1990); Avron & Toledo (2011): the trace from Rademacher probes (:func:`hutchinson_trace`).

Every random number is drawn on the CPU from a caller-seeded ``torch.Generator`` and then moved to the
parameter's device and dtype, so a landscape is reproducible from its seed and a CPU and a GPU run draw the same
directions and probes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Params = dict[str, torch.Tensor]
Progress = Callable[[int], None] | None
Hvp = Callable[[Params], Params]

#: guards a division by the norm of a direction filter that happens to be zero (Li et al. use the same 1e-10)
_EPS = 1e-10


# --------------------------------------------------------------------------------------------- parameters


def trainable(model: nn.Module) -> Params:
    """Detached clones of the parameters that require grad, by ``named_parameters`` name.

    Clones, because the caller keeps them as the landscape's center while the model may go on training (a
    callback); frozen parameters are left out, since a direction along them is not one the optimiser could take.
    """
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _as_params(model_or_params: nn.Module | Params) -> Params:
    if isinstance(model_or_params, nn.Module):
        return {name: p.detach() for name, p in model_or_params.named_parameters() if p.requires_grad}
    return dict(model_or_params)


def _randn_like(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal numbers shaped like ``t``, drawn on the CPU (same numbers on every device)."""
    draw_dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return torch.randn(t.shape, generator=generator, dtype=draw_dtype).to(device=t.device, dtype=t.dtype)


def filter_normalized_direction(model_or_params: nn.Module | Params, generator: torch.Generator, *,
                                zero_bn_and_bias: bool = True) -> Params:
    """A Gaussian direction with the scale of the weights, filter by filter (Li et al. 2018, §4).

    A plain random direction is meaningless across networks: ReLU networks are invariant to rescaling a filter,
    so the same step moves a small-norm filter much further than a large one. Li et al. therefore rescale every
    filter of the direction (slice along dim 0 of a conv or linear weight) to the Frobenius norm of the matching
    weight filter, which makes slices of different nets (plain vs ResNet) comparable. Parameters with dim <= 1
    (biases, BatchNorm weight and bias) get zeros when ``zero_bn_and_bias`` (their ``ignore='biasbn'``), else
    are rescaled as a whole to the parameter's norm.

    A number is drawn for every parameter, zeroed or not, in ``named_parameters`` order, so the weight
    directions do not depend on ``zero_bn_and_bias``.
    """
    direction: Params = {}
    for name, w in _as_params(model_or_params).items():
        d = _randn_like(w, generator)
        if w.dim() <= 1:
            d = torch.zeros_like(w) if zero_bn_and_bias else d * (w.norm() / (d.norm() + _EPS))
        else:
            dims = tuple(range(1, w.dim()))
            w_norms = torch.linalg.vector_norm(w.detach(), dim=dims, keepdim=True)
            d_norms = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
            d = d * (w_norms / (d_norms + _EPS))
        direction[name] = d
    return direction


def _check_keys(a: Params, b: Params, what: str) -> None:
    if a.keys() != b.keys():
        missing = sorted(a.keys() ^ b.keys())
        raise ValueError(f"{what}: the parameter dicts differ in {missing[:5]}; build both from the same model.")


def difference(end: Params, start: Params) -> Params:
    """``end - start``: the direction of the straight line from ``start`` to ``end`` (Goodfellow et al. 2015)."""
    _check_keys(end, start, "difference")
    return {name: end[name] - start[name] for name in end}


def _combine(center: Params, terms: Sequence[tuple[float, Params]]) -> Params:
    """``center + sum(c * d)``; a zero coefficient is skipped, so coordinate 0 is the center bit for bit."""
    out: Params = {}
    for name, c in center.items():
        value = c
        for coefficient, d in terms:
            if coefficient != 0.0:
                value = value + coefficient * d[name]
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------- evaluation


def _images(batch: Batch) -> int:
    return int(batch[0].shape[0])


def _check_batches(batches: Sequence[Batch]) -> int:
    if len(batches) == 0:
        raise ValueError("batches is empty; pass at least one (inputs, targets) batch to evaluate the loss on.")
    return sum(_images(b) for b in batches)


def _with_buffers(model: nn.Module, params: Params) -> dict[str, torch.Tensor]:
    """``params`` plus clones of the model's buffers: a model left in train mode updates the clones' BatchNorm
    statistics, never the run's own."""
    return {**{name: b.clone() for name, b in model.named_buffers()}, **params}


def evaluate(model: nn.Module, params: Params, batches: Sequence[Batch], loss_fn: LossFn,
             metric_fn: MetricFn | None = None) -> tuple[float, float | None]:
    """Loss (and metric) of ``model`` at ``params``, averaged over all images of ``batches``.

    Each batch's mean is weighted by its number of images, so the result is the mean over the images whatever
    the split (a short last batch counts for what it holds). Parameters not in ``params`` (frozen ones) and the
    buffers are the model's own. No gradients are recorded.
    """
    total = _check_batches(batches)
    loss_sum = 0.0
    metric_sum = 0.0
    tensors = _with_buffers(model, params)
    with torch.no_grad():
        for inputs, targets in batches:
            outputs = functional_call(model, tensors, (inputs,))
            n = _images((inputs, targets))
            loss_sum += float(loss_fn(outputs, targets)) * n
            if metric_fn is not None:
                metric_sum += float(metric_fn(outputs, targets)) * n
    return loss_sum / total, (metric_sum / total if metric_fn is not None else None)


def _tick(progress: Progress) -> None:
    if progress is not None:
        progress(1)


def interpolate(model: nn.Module, start: Params, end: Params, alphas: Sequence[float], batches: Sequence[Batch],
                loss_fn: LossFn, metric_fn: MetricFn | None = None, progress: Progress = None) -> dict[str, Any]:
    """Loss along ``theta(a) = (1 - a) start + a end`` (Goodfellow et al. 2015), at each of ``alphas``.

    Written as a weighted sum rather than ``start + a (end - start)`` so that a = 0 and a = 1 give the endpoints
    exactly; alphas outside [0, 1] extrapolate. Returns ``{"alpha", "loss", "metric"}`` (metric None without
    ``metric_fn``).
    """
    _check_keys(start, end, "interpolate")
    losses: list[float] = []
    metrics: list[float] = []
    for a in alphas:
        a = float(a)
        if a == 0.0:
            theta = start
        elif a == 1.0:
            theta = end
        else:
            theta = {name: (1.0 - a) * start[name] + a * end[name] for name in start}
        loss, metric = evaluate(model, theta, batches, loss_fn, metric_fn)
        losses.append(loss)
        if metric is not None:
            metrics.append(metric)
        _tick(progress)
    return {"alpha": [float(a) for a in alphas], "loss": losses, "metric": metrics if metric_fn is not None else None}


def slice_1d(model: nn.Module, center: Params, direction: Params, coords: Sequence[float],
             batches: Sequence[Batch], loss_fn: LossFn, metric_fn: MetricFn | None = None,
             progress: Progress = None) -> dict[str, Any]:
    """Loss at ``center + t * direction`` for each t of ``coords`` (Li et al. 2018, §4, 1D plots).

    Coordinate 0 evaluates ``center`` itself, so it equals :func:`evaluate` there exactly.
    Returns ``{"coords", "loss", "metric"}``.
    """
    _check_keys(center, direction, "slice_1d")
    losses: list[float] = []
    metrics: list[float] = []
    for t in coords:
        loss, metric = evaluate(model, _combine(center, [(float(t), direction)]), batches, loss_fn, metric_fn)
        losses.append(loss)
        if metric is not None:
            metrics.append(metric)
        _tick(progress)
    return {"coords": [float(t) for t in coords], "loss": losses, "metric": metrics if metric_fn is not None else None}


def slice_2d(model: nn.Module, center: Params, d1: Params, d2: Params, coords: Sequence[float],
             batches: Sequence[Batch], loss_fn: LossFn, metric_fn: MetricFn | None = None,
             progress: Progress = None) -> dict[str, Any]:
    """Loss on the grid ``center + x d1 + y d2`` for x, y in ``coords`` (Li et al. 2018, §4, contour plots).

    ``loss[j][i]`` is at ``x = coords[i]`` (along d1, the columns) and ``y = coords[j]`` (along d2, the rows),
    the layout ``matplotlib``'s ``contour(X, Y, Z)`` expects with ``X, Y = meshgrid(coords, coords)``.
    Returns ``{"coords", "loss", "metric"}``, metric None without ``metric_fn``.
    """
    _check_keys(center, d1, "slice_2d")
    _check_keys(center, d2, "slice_2d")
    losses: list[list[float]] = []
    metrics: list[list[float]] = []
    for y in coords:
        loss_row: list[float] = []
        metric_row: list[float] = []
        for x in coords:
            theta = _combine(center, [(float(x), d1), (float(y), d2)])
            loss, metric = evaluate(model, theta, batches, loss_fn, metric_fn)
            loss_row.append(loss)
            if metric is not None:
                metric_row.append(metric)
            _tick(progress)
        losses.append(loss_row)
        metrics.append(metric_row)
    return {"coords": [float(t) for t in coords], "loss": losses, "metric": metrics if metric_fn is not None else None}


# ------------------------------------------------------------------------------------------------ curvature


def hvp_operator(model: nn.Module, params: Params, batches: Sequence[Batch], loss_fn: LossFn,
                 progress: Progress = None, *, mode: str = "reverse") -> Hvp:
    """``v -> H v``, the exact Hessian of the image-averaged loss over ``batches`` at ``params``, times v.

    Per batch an exact Hessian-vector product (Pearlmutter 1994), weighted by the batch's share of the images,
    so the operator is the Hessian of the same mean loss :func:`evaluate` reports, whatever the batch split.
    ``mode="reverse"`` (default) differentiates the gradient's dot product with v again (double backward), which
    every op with a backward supports; ``mode="forward"`` pushes v forward through the gradient
    (``torch.func.jvp`` of ``torch.func.grad``), which needs forward-mode formulas for every op of the model (and,
    on first use, loads torch's jvp decompositions); on the project's ResNet on one CPU thread it was slower than
    double backward, hence not the default. Either way the model's own parameters are never touched.
    ``progress`` ticks once per product.
    """
    if mode not in ("reverse", "forward"):
        raise ValueError(f"hvp_operator: mode={mode!r} is not one of 'reverse', 'forward'; pick one of them.")
    total = _check_batches(batches)
    names = list(params)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    center = {name: params[name].detach() for name in names}

    def batch_loss(p: Params, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, {**buffers, **p}, (inputs,)), targets)

    def reverse_hvp(v: Params, inputs: torch.Tensor, targets: torch.Tensor) -> Params:
        leaves = {name: center[name].clone().requires_grad_(True) for name in names}
        with torch.enable_grad():
            loss = batch_loss(leaves, inputs, targets)
            grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True, allow_unused=True)
            dot = sum(((g * v[n]).sum() for g, n in zip(grads, names, strict=True) if g is not None),
                      torch.zeros((), device=loss.device, dtype=loss.dtype))
            if not dot.requires_grad:  # the loss is linear (or constant) in every parameter: H = 0
                return {n: torch.zeros_like(center[n]) for n in names}
            hv = torch.autograd.grad(dot, list(leaves.values()), allow_unused=True)
        return {n: (h.detach() if h is not None else torch.zeros_like(center[n])) for n, h in zip(names, hv,
                                                                                                  strict=True)}

    def forward_hvp(v: Params, inputs: torch.Tensor, targets: torch.Tensor) -> Params:
        def grad_of(p: Params) -> Params:
            return torch.func.grad(batch_loss)(p, inputs, targets)

        _, hv = torch.func.jvp(grad_of, (center,), (v,))
        return {n: hv[n].detach() for n in names}

    one = reverse_hvp if mode == "reverse" else forward_hvp

    def hvp(v: Params) -> Params:
        _check_keys(center, v, "hvp")
        v = {n: v[n].to(device=center[n].device, dtype=center[n].dtype) for n in names}
        out = {n: torch.zeros_like(center[n]) for n in names}
        for inputs, targets in batches:
            weight = _images((inputs, targets)) / total
            part = one(v, inputs, targets)
            for n in names:
                out[n] = out[n] + weight * part[n]
        _tick(progress)
        return out

    return hvp


def _flatten(params: Params, like: Params, dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([params[n].reshape(-1).to(dtype) for n in like])


def _unflatten(vector: torch.Tensor, like: Params) -> Params:
    out: Params = {}
    offset = 0
    for n, t in like.items():
        size = t.numel()
        out[n] = vector[offset:offset + size].view_as(t).to(dtype=t.dtype)
        offset += size
    return out


def _work_dtype(like: Params) -> torch.dtype:
    """The promoted dtype of the parameters, at least float32 (half precision is too coarse for Lanczos)."""
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in like.values()))
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _device(like: Params) -> torch.device:
    return next(iter(like.values())).device


def _default(generator: torch.Generator | None) -> torch.Generator:
    """The caller's generator, or a fresh one seeded 0 (never the global RNG, so results never drift)."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _random_unit(dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    v = torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    return v / v.norm()


def lanczos(hvp: Hvp, like: Params, iters: int = 20, generator: torch.Generator | None = None) -> list[float]:
    """All Ritz values (ascending) of ``min(iters, dim)`` Lanczos steps on the symmetric operator ``hvp``.

    Why full reorthogonalisation: in floating point, plain three-term Lanczos loses the orthogonality of its
    vectors as soon as a Ritz value converges, and then produces spurious copies ("ghosts") of converged
    eigenvalues, so the second and third "largest" eigenvalues come out equal to the first. Orthogonalising each
    new vector against all previous ones (twice, Gram-Schmidt) removes that; at ~20 steps storing the vectors
    costs ``20 * dim`` numbers and the projections are negligible next to one Hessian-vector product (about two
    forward-backward passes over every batch). When the Krylov space is exhausted early (an invariant subspace,
    e.g. a low-rank Hessian), it restarts from a fresh random vector orthogonal to all previous ones, so
    ``dim`` steps always give the exact spectrum.

    Extreme Ritz values converge first, from the inside: the largest is a lower bound of lambda_max, the
    smallest an upper bound of lambda_min. ``hvp`` is called exactly ``min(iters, dim)`` times.
    """
    if iters < 1:
        raise ValueError(f"lanczos: iters={iters} must be at least 1; use e.g. iters=20.")
    generator = _default(generator)
    dtype, device = _work_dtype(like), _device(like)
    dim = sum(t.numel() for t in like.values())
    steps = min(iters, dim)
    basis = torch.empty(steps, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    basis[0] = _random_unit(dim, generator, dtype, device)
    for j in range(steps):
        q = basis[j]
        w = _flatten(hvp(_unflatten(q, like)), like, dtype)
        alphas.append(float(w @ q))
        scale = max(abs(alphas[-1]), float(w.norm()), 1e-300)
        previous = basis[: j + 1]
        for _ in range(2):  # full reorthogonalisation (also subtracts alpha_j q_j and beta_{j-1} q_{j-1})
            w = w - previous.T @ (previous @ w)
        if j == steps - 1:
            break
        beta = float(w.norm())
        if beta <= 1e-10 * scale:  # invariant subspace: restart orthogonally, the tridiagonal matrix splits
            beta = 0.0
            w = _random_unit(dim, generator, dtype, device)
            for _ in range(2):
                w = w - previous.T @ (previous @ w)
        betas.append(beta)
        basis[j + 1] = w / w.norm()
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return [float(x) for x in torch.linalg.eigvalsh(t)]


def top_eigenvalues(hvp: Hvp, like: Params, k: int = 1, iters: int = 20,
                    generator: torch.Generator | None = None) -> list[float]:
    """The k largest (algebraic) eigenvalues of H, descending: the top Ritz values of :func:`lanczos`.

    Lanczos with full reorthogonalisation, because without it the converged top eigenvalue reappears as ghost
    copies and k > 1 would report it several times (see :func:`lanczos`). ``iters`` Lanczos steps, at most
    the number of parameters (then the result is exact); deterministic given ``generator``.
    """
    dim = sum(t.numel() for t in like.values())
    if not 1 <= k <= min(iters, dim):
        raise ValueError(f"top_eigenvalues: k={k} must be between 1 and min(iters, parameters) = "
                         f"{min(iters, dim)}; raise iters or lower k.")
    ritz = lanczos(hvp, like, iters, generator)
    return sorted(ritz, reverse=True)[:k]


def min_eigenvalue(hvp: Hvp, like: Params, lambda_max: float, iters: int = 20,
                   generator: torch.Generator | None = None) -> float:
    """The smallest (most negative) eigenvalue of H, from Lanczos on the shifted operator ``H - lambda_max I``.

    The shift moves H's spectrum to ``[lambda_min - lambda_max, 0]``, so the wanted end is the one of largest
    magnitude, the end power iteration would find; Lanczos builds the same Krylov space as for H (it is shift
    invariant) and its smallest Ritz value plus ``lambda_max`` is the answer, never worse than power iteration
    with the same number of products. Li et al. (2018, §7) map ``|lambda_min / lambda_max|``: near 0 the
    surface is convex along every direction, large values mean strong negative curvature (saddle-like).
    """
    if not math.isfinite(lambda_max):
        raise ValueError(f"min_eigenvalue: lambda_max={lambda_max} is not finite; pass top_eigenvalues(...)[0].")

    def shifted(v: Params) -> Params:
        hv = hvp(v)
        return {n: hv[n] - lambda_max * v[n] for n in hv}

    return min(lanczos(shifted, like, iters, generator)) + lambda_max


def hutchinson_trace(hvp: Hvp, like: Params, samples: int = 10,
                     generator: torch.Generator | None = None) -> tuple[float, float]:
    """``(estimate, standard error)`` of trace(H) from ``samples`` Rademacher probes ``z^T H z``.

    Hutchinson (1990): E[z^T H z] = trace(H) for z with independent +-1 entries; among i.i.d. probe
    distributions Rademacher has the least variance, ``2 * sum_{i != j} H_ij^2`` per probe (Avron & Toledo 2011),
    so a diagonal H is estimated exactly. The standard error is the sample standard deviation / sqrt(samples)
    (NaN for a single probe).
    """
    if samples < 1:
        raise ValueError(f"hutchinson_trace: samples={samples} must be at least 1; use e.g. samples=10.")
    generator = _default(generator)
    dtype, device = _work_dtype(like), _device(like)
    dim = sum(t.numel() for t in like.values())
    values: list[float] = []
    for _ in range(samples):
        z = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device=device, dtype=dtype)
        hz = _flatten(hvp(_unflatten(z, like)), like, dtype)
        values.append(float(z @ hz))
    estimate = sum(values) / samples
    if samples == 1:
        return estimate, float("nan")
    variance = sum((x - estimate) ** 2 for x in values) / (samples - 1)
    return estimate, math.sqrt(variance / samples)


def curvature_products(params: Params, iters: int = 20, trace_samples: int = 10) -> int:
    """How many Hessian-vector products :func:`curvature` computes (the length of its progress bar)."""
    return min(iters, sum(t.numel() for t in params.values())) + trace_samples


def curvature(model: nn.Module, params: Params, batches: Sequence[Batch], loss_fn: LossFn, *, k: int = 1,
              iters: int = 20, trace_samples: int = 10, seed: int = 0, progress: Progress = None,
              mode: str = "reverse") -> dict[str, Any]:
    """Top eigenvalues, smallest eigenvalue, ``|lambda_min/lambda_max|`` and trace of the loss Hessian at params.

    One Lanczos run gives both ends of the spectrum (its largest and smallest Ritz values), so the cost is
    ``min(iters, dim) + trace_samples`` Hessian-vector products (:func:`curvature_products`), each about two
    forward-backward passes over ``batches``. All random numbers (the Lanczos start, then the Hutchinson probes)
    come from one generator seeded with ``seed``. The Hessian is the one of the image-averaged loss over
    ``batches``; ``batches`` and ``images`` record that budget beside the numbers.
    """
    dim = sum(t.numel() for t in params.values())
    if not 1 <= k <= min(iters, dim):
        raise ValueError(f"curvature: k={k} must be between 1 and min(iters, parameters) = {min(iters, dim)}; "
                         "raise iters or lower k.")
    images = _check_batches(batches)
    hvp = hvp_operator(model, params, batches, loss_fn, progress, mode=mode)
    generator = torch.Generator().manual_seed(seed)
    ritz = lanczos(hvp, params, iters, generator)
    top = sorted(ritz, reverse=True)[:k]
    min_eig = min(ritz)
    trace, trace_stderr = hutchinson_trace(hvp, params, trace_samples, generator)
    return {
        "top_eigenvalues": top,
        "top_eig": top[0],
        "min_eig": min_eig,
        "min_max_ratio": abs(min_eig / top[0]) if top[0] != 0.0 else float("inf"),
        "trace": trace,
        "trace_stderr": trace_stderr,
        "batches": len(batches),
        "images": images,
        "iters": iters,
        "trace_samples": trace_samples,
        "seed": seed,
    }
