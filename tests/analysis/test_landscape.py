"""Loss-landscape slices and Hessian curvature against closed forms.

Linear regression has a known Hessian (1/2 mean squared error: X^T X / n; torch's mean ``mse_loss``: 2 X^T X / n),
and its loss along any line is an exact parabola, so eigenvalues, trace and slices are checked against formulas
rather than against the code's own output. Everything runs in float64 on tiny models (the file takes ~2 s).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.analysis.landscape import (
    curvature,
    curvature_products,
    difference,
    evaluate,
    filter_normalized_direction,
    hutchinson_trace,
    hvp_operator,
    interpolate,
    lanczos,
    min_eigenvalue,
    slice_1d,
    slice_2d,
    top_eigenvalues,
    trainable,
)

N, D = 40, 8


def half_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((outputs - targets) ** 2).mean()


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(dim=1) == targets).double().mean()


@pytest.fixture
def regression() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    # column scales spread the eigenvalues of X^T X apart, so the top three are well separated
    x = torch.randn(N, D, generator=g, dtype=torch.float64) * torch.linspace(0.3, 3.0, D, dtype=torch.float64)
    y = torch.randn(N, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, D, generator=g, dtype=torch.float64))
    return model, x, y


def hessian_matrix(hvp, like: dict[str, torch.Tensor]) -> torch.Tensor:
    """H, column by column, from products with the unit vectors (only for a single-parameter model)."""
    (name, t), = like.items()
    columns = []
    for i in range(t.numel()):
        e = torch.zeros(t.numel(), dtype=t.dtype)
        e[i] = 1.0
        columns.append(hvp({name: e.view_as(t)})[name].reshape(-1))
    return torch.stack(columns, dim=1)


class Quadratic(nn.Module):
    """``outputs = w``; with ``loss = 1/2 w^T A w`` the Hessian is exactly A (any symmetric A, indefinite too)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, dim, dtype=torch.float64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.w.expand(inputs.shape[0], -1)


class TinyNet(nn.Module):
    """Conv + BatchNorm + ReLU + linear on 8x8 images: the shapes a filter-normalised direction must handle."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def tiny_net() -> tuple[TinyNet, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = TinyNet().double()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(12, 3, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (12,), generator=g)
    with torch.no_grad():  # non-trivial running statistics, as after training
        model.train()
        model(images)
    model.eval()
    return model, [(images[:7], labels[:7]), (images[7:], labels[7:])]


# ------------------------------------------------------------------------------ known Hessian: linear regression


@pytest.mark.parametrize(("loss_fn", "factor"), [(half_mse, 1.0), (F.mse_loss, 2.0)], ids=["half_mse", "mse_loss"])
def test_hessian_of_linear_regression_matches_closed_form(regression, loss_fn, factor) -> None:
    model, x, y = regression
    params = trainable(model)
    h_exact = factor * x.T @ x / N
    hvp = hvp_operator(model, params, [(x, y)], loss_fn)
    torch.testing.assert_close(hessian_matrix(hvp, params), h_exact, rtol=1e-12, atol=1e-12)
    exact = torch.linalg.eigvalsh(h_exact)  # ascending

    top = top_eigenvalues(hvp, params, k=3, iters=20, generator=torch.Generator().manual_seed(0))
    assert top == sorted(top, reverse=True)
    for got, want in zip(top, exact.flip(0)[:3].tolist(), strict=True):
        assert got == pytest.approx(want, rel=1e-4)

    smallest = min_eigenvalue(hvp, params, top[0], iters=20, generator=torch.Generator().manual_seed(0))
    assert smallest == pytest.approx(float(exact[0]), rel=1e-4)

    trace = float(torch.trace(h_exact))
    few, few_err = hutchinson_trace(hvp, params, samples=30, generator=torch.Generator().manual_seed(3))
    many, many_err = hutchinson_trace(hvp, params, samples=600, generator=torch.Generator().manual_seed(3))
    assert abs(few - trace) < 4 * few_err
    assert abs(many - trace) < 4 * many_err
    assert many_err < 0.4 * few_err  # ~ 1/sqrt(samples): sqrt(30/600) = 0.22
    assert many == pytest.approx(trace, rel=0.05)


def test_hutchinson_is_exact_for_a_diagonal_hessian() -> None:
    # orthogonal columns: X^T X is diagonal, and every Rademacher probe gives z^T H z = trace(H) exactly
    x = torch.zeros(6, 3, dtype=torch.float64)
    x[0, 0], x[1, 1], x[2, 2], x[3, 0] = 2.0, 3.0, 0.5, 1.0
    model = nn.Linear(3, 1, bias=False).double()
    hvp = hvp_operator(model, trainable(model), [(x, torch.zeros(6, 1, dtype=torch.float64))], half_mse)
    estimate, stderr = hutchinson_trace(hvp, trainable(model), samples=5, generator=torch.Generator().manual_seed(0))
    assert estimate == pytest.approx((4.0 + 9.0 + 0.25 + 1.0) / 6, rel=1e-12)
    assert stderr == pytest.approx(0.0, abs=1e-12)


def test_unequal_batches_give_the_full_batch_hessian(regression) -> None:
    model, x, y = regression
    params = trainable(model)
    full = hvp_operator(model, params, [(x, y)], F.mse_loss)
    split = hvp_operator(model, params, [(x[:13], y[:13]), (x[13:], y[13:])], F.mse_loss)
    torch.testing.assert_close(hessian_matrix(split, params), hessian_matrix(full, params), rtol=1e-12, atol=1e-12)
    gen = torch.Generator
    assert top_eigenvalues(split, params, k=2, generator=gen().manual_seed(5)) == pytest.approx(
        top_eigenvalues(full, params, k=2, generator=gen().manual_seed(5)), rel=1e-10)
    # an unweighted mean of the two batch Hessians would differ: the weighting is what makes them equal
    unweighted = 0.5 * (2 * x[:13].T @ x[:13] / 13 + 2 * x[13:].T @ x[13:] / 27)
    assert not torch.allclose(unweighted, hessian_matrix(full, params))


def test_indefinite_quadratic_gives_negative_min_eigenvalue() -> None:
    dim = 12
    g = torch.Generator().manual_seed(4)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    spectrum = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1, 0.0, -0.2, -0.7, -1.0, -1.5, -2.5], dtype=torch.float64)
    a = q @ torch.diag(spectrum) @ q.T
    a = 0.5 * (a + a.T)

    def quadratic_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w = outputs[0]
        return 0.5 * w @ a @ w

    model = Quadratic(dim)
    batches = [(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))]
    result = curvature(model, trainable(model), batches, quadratic_loss, k=3, iters=dim, trace_samples=400, seed=0)
    assert result["top_eigenvalues"] == pytest.approx([5.0, 3.0, 2.0], rel=1e-8)
    assert result["min_eig"] == pytest.approx(-2.5, rel=1e-8)
    assert result["min_max_ratio"] == pytest.approx(0.5, rel=1e-8)
    assert abs(result["trace"] - float(spectrum.sum())) < 4 * result["trace_stderr"]
    hvp = hvp_operator(model, trainable(model), batches, quadratic_loss)
    assert min_eigenvalue(hvp, trainable(model), 5.0, iters=dim) == pytest.approx(-2.5, rel=1e-8)


def test_two_layer_product_has_a_saddle_at_zero() -> None:
    # f = b * a * x with loss 1/2 (f - y)^2: at a = b = 0 the Hessian is [[0, -xy], [-xy, 0]], eigenvalues +-xy
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    x = torch.tensor([[1.5]], dtype=torch.float64)
    y = torch.tensor([[2.0]], dtype=torch.float64)
    hvp = hvp_operator(model, trainable(model), [(x, y)], half_mse)
    params = trainable(model)
    assert top_eigenvalues(hvp, params, k=2) == pytest.approx([3.0, -3.0], rel=1e-10)
    assert min_eigenvalue(hvp, params, 3.0) == pytest.approx(-3.0, rel=1e-10)


def test_lanczos_restarts_on_a_low_rank_hessian() -> None:
    # one sample: H = 2 x x^T / 1 has rank one; the Krylov space of a random start is 2-dimensional at most, so
    # Lanczos must restart to return the full spectrum (one eigenvalue 2|x|^2, the rest zero)
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5]], dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    hvp = hvp_operator(model, trainable(model), [(x, torch.zeros(1, 1, dtype=torch.float64))], F.mse_loss)
    ritz = lanczos(hvp, trainable(model), iters=10)
    assert len(ritz) == 4
    assert ritz == pytest.approx([0.0, 0.0, 0.0, 2 * float(x.pow(2).sum())], abs=1e-10)


# torch's forward-mode AD scripts its jvp decompositions on first use, with torch.jit's deprecation warning
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_forward_and_reverse_hvp_agree_on_a_batchnorm_net(tiny_net) -> None:
    model, batches = tiny_net
    params = trainable(model)
    v = filter_normalized_direction(params, torch.Generator().manual_seed(0), zero_bn_and_bias=False)
    reverse = hvp_operator(model, params, batches, F.cross_entropy)(v)
    forward = hvp_operator(model, params, batches, F.cross_entropy, mode="forward")(v)
    for name in params:
        torch.testing.assert_close(forward[name], reverse[name], rtol=1e-8, atol=1e-10)
    # H is symmetric: u.Hv == v.Hu
    u = filter_normalized_direction(params, torch.Generator().manual_seed(1), zero_bn_and_bias=False)
    hu = hvp_operator(model, params, batches, F.cross_entropy)(u)
    uhv = sum(float((u[n] * reverse[n]).sum()) for n in params)
    vhu = sum(float((v[n] * hu[n]).sum()) for n in params)
    assert uhv == pytest.approx(vhu, rel=1e-8)


# ------------------------------------------------------------------------------------------ filter normalisation


def test_filter_normalised_direction_matches_filter_norms(tiny_net) -> None:
    model, _ = tiny_net
    model.conv2.weight.requires_grad_(False)  # frozen parameters are not directions
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert set(direction) == {n for n, p in model.named_parameters() if p.requires_grad}
    weights = dict(model.named_parameters())
    for name, d in direction.items():
        w = weights[name]
        assert d.shape == w.shape and d.dtype == w.dtype and d.device == w.device
        if w.dim() >= 2:  # conv (out, in, kh, kw) and linear (out, in): one norm per output filter
            d_norms = d.reshape(d.shape[0], -1).norm(dim=1)
            w_norms = w.detach().reshape(w.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(d_norms, w_norms, rtol=1e-9, atol=0.0)
            assert not torch.allclose(d, w)  # random, not the weight itself
        else:  # conv/linear bias, BatchNorm weight and bias
            assert torch.count_nonzero(d) == 0, name
    assert {"conv.bias", "bn.weight", "bn.bias", "fc.bias"} <= set(direction)


def test_biases_are_normalised_as_a_whole_when_kept(tiny_net) -> None:
    model, _ = tiny_net
    kept = filter_normalized_direction(model, torch.Generator().manual_seed(0), zero_bn_and_bias=False)
    zeroed = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    for name, w in trainable(model).items():
        if w.dim() <= 1:
            assert float(kept[name].norm()) == pytest.approx(float(w.norm()), rel=1e-9)
        else:  # the weight directions do not depend on the switch
            assert torch.equal(kept[name], zeroed[name])


# -------------------------------------------------------------------------------------- slices and interpolation


def test_slice_and_interpolation_hit_evaluate_at_their_anchors(tiny_net) -> None:
    model, batches = tiny_net
    center = trainable(model)
    with torch.no_grad():  # the loss a run's evaluation reports: the model called directly, image-weighted
        direct = sum(float(F.cross_entropy(model(x), y)) * len(x) for x, y in batches) / 12
    loss0, acc0 = evaluate(model, center, batches, F.cross_entropy, accuracy)
    assert loss0 == pytest.approx(direct, rel=1e-12)

    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    line = slice_1d(model, center, d, [-0.5, 0.0, 0.5], batches, F.cross_entropy, accuracy)
    assert line["coords"] == [-0.5, 0.0, 0.5]
    assert line["loss"][1] == loss0 and line["metric"][1] == acc0
    assert line["loss"][0] != loss0

    start = {n: t + 0.3 * d[n] for n, t in center.items()}
    ticks: list[int] = []
    path = interpolate(model, start, center, [0.0, 0.25, 1.0], batches, F.cross_entropy, accuracy, ticks.append)
    assert ticks == [1, 1, 1]
    assert path["loss"][0] == evaluate(model, start, batches, F.cross_entropy)[0]
    assert path["loss"][2] == loss0 and path["metric"][2] == acc0
    # theta(0.25) = 0.75 start + 0.25 end = center + 0.225 d
    quarter = evaluate(model, {n: t + 0.225 * d[n] for n, t in center.items()}, batches, F.cross_entropy)[0]
    assert path["loss"][1] == pytest.approx(quarter, rel=1e-10)
    assert interpolate(model, start, center, [0.5], batches, F.cross_entropy)["metric"] is None


def test_slices_of_linear_regression_are_the_predicted_parabolas(regression) -> None:
    model, x, y = regression
    center = trainable(model)
    g = torch.Generator().manual_seed(0)
    d1 = {"weight": torch.randn(1, D, generator=g, dtype=torch.float64)}
    d2 = {"weight": torch.randn(1, D, generator=g, dtype=torch.float64)}
    r = x @ center["weight"].T - y
    x1, x2 = x @ d1["weight"].T, x @ d2["weight"].T

    def exact(a: float, b: float) -> float:  # 1/2 mean((r + a X d1 + b X d2)^2), expanded
        return float(0.5 * (r**2).mean() + a * (r * x1).mean() + b * (r * x2).mean() + 0.5 * a * a * (x1**2).mean()
                     + a * b * (x1 * x2).mean() + 0.5 * b * b * (x2**2).mean())

    batches = [(x[:15], y[:15]), (x[15:], y[15:])]  # unequal batches: the slice is still the full mean
    coords = [-1.0, -0.25, 0.0, 0.5, 2.0]
    line = slice_1d(model, center, d1, coords, batches, half_mse)
    assert line["loss"] == pytest.approx([exact(t, 0.0) for t in coords], rel=1e-12)
    assert line["metric"] is None

    ticks: list[int] = []
    grid = slice_2d(model, center, d1, d2, coords, batches, half_mse, progress=ticks.append)
    assert len(ticks) == len(coords) ** 2
    for j, b in enumerate(coords):  # rows: d2 coordinate
        for i, a in enumerate(coords):  # columns: d1 coordinate
            assert grid["loss"][j][i] == pytest.approx(exact(a, b), rel=1e-12)

    path = interpolate(model, center, {"weight": center["weight"] + d1["weight"]}, coords, batches, half_mse)
    assert path["loss"] == pytest.approx([exact(a, 0.0) for a in coords], rel=1e-12)
    assert torch.equal(difference({"weight": center["weight"] + d1["weight"]}, center)["weight"],
                       (center["weight"] + d1["weight"]) - center["weight"])


# ------------------------------------------------------------------------------------------------ reproducibility


def test_same_seed_same_landscape_different_seed_different(tiny_net) -> None:
    model, batches = tiny_net
    a = filter_normalized_direction(model, torch.Generator().manual_seed(7))
    b = filter_normalized_direction(model, torch.Generator().manual_seed(7))
    c = filter_normalized_direction(model, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])
    assert not torch.equal(a["fc.weight"], c["fc.weight"])

    params = trainable(model)
    first = curvature(model, params, batches, F.cross_entropy, k=2, iters=6, trace_samples=4, seed=3)
    again = curvature(model, params, batches, F.cross_entropy, k=2, iters=6, trace_samples=4, seed=3)
    other = curvature(model, params, batches, F.cross_entropy, k=2, iters=6, trace_samples=4, seed=4)
    assert first == again
    assert other["trace"] != first["trace"]


def test_curvature_and_slice_2d_run_on_a_batchnorm_net_and_leave_it_unchanged(tiny_net) -> None:
    model, batches = tiny_net
    before = {k: v.clone() for k, v in model.state_dict().items()}  # parameters and BN running statistics
    params = trainable(model)
    ticks: list[int] = []
    result = curvature(model, params, batches, F.cross_entropy, k=2, iters=8, trace_samples=3, seed=0,
                       progress=ticks.append)
    assert len(ticks) == curvature_products(params, iters=8, trace_samples=3) == 11
    assert set(result) == {"top_eigenvalues", "top_eig", "min_eig", "min_max_ratio", "trace", "trace_stderr",
                           "batches", "images", "iters", "trace_samples", "seed"}
    assert result["batches"] == 2 and result["images"] == 12 and result["iters"] == 8 and result["seed"] == 0
    assert result["top_eig"] == result["top_eigenvalues"][0] >= result["top_eigenvalues"][1] >= result["min_eig"]
    assert result["top_eig"] > 0  # cross-entropy near initialisation is curved upward along some direction
    assert result["min_max_ratio"] == pytest.approx(abs(result["min_eig"] / result["top_eig"]))
    assert all(math.isfinite(result[k]) for k in ("top_eig", "min_eig", "trace", "trace_stderr"))

    d1 = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    d2 = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    grid = slice_2d(model, params, d1, d2, [-1.0, 0.0, 1.0], batches, F.cross_entropy, accuracy)
    assert len(grid["loss"]) == 3 and all(len(row) == 3 for row in grid["loss"])
    assert grid["loss"][1][1] == evaluate(model, params, batches, F.cross_entropy)[0]
    assert all(0.0 <= m <= 1.0 for row in grid["metric"] for m in row)

    assert not model.training
    model.train()  # even a caller that forgot eval mode keeps the run's BatchNorm statistics
    evaluate(model, params, batches, F.cross_entropy)
    model.eval()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_name_the_fix(regression) -> None:
    model, x, y = regression
    params = trainable(model)
    hvp = hvp_operator(model, params, [(x, y)], half_mse)
    with pytest.raises(ValueError, match="k=9"):
        top_eigenvalues(hvp, params, k=9, iters=20)
    with pytest.raises(ValueError, match="batches is empty"):
        evaluate(model, params, [], half_mse)
    with pytest.raises(ValueError, match="differ"):
        difference(params, {"bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="mode='sideways'"):
        hvp_operator(model, params, [(x, y)], half_mse, mode="sideways")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_gpu_draw_the_same_directions_and_curvature(tiny_net) -> None:
    model, batches = tiny_net
    gpu_model = TinyNet().double().cuda()
    gpu_model.load_state_dict(model.state_dict())
    gpu_model.eval()
    gpu_batches = [(x.cuda(), y.cuda()) for x, y in batches]
    cpu_d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    gpu_d = filter_normalized_direction(gpu_model, torch.Generator().manual_seed(0))
    for name, d in cpu_d.items():
        assert gpu_d[name].device.type == "cuda"
        torch.testing.assert_close(gpu_d[name].cpu(), d, rtol=1e-12, atol=1e-14)
    cpu = curvature(model, trainable(model), batches, F.cross_entropy, k=2, iters=8, trace_samples=3)
    gpu = curvature(gpu_model, trainable(gpu_model), gpu_batches, F.cross_entropy, k=2, iters=8, trace_samples=3)
    for key in ("top_eig", "min_eig", "trace"):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-6, abs=1e-9)
    line = slice_1d(gpu_model, trainable(gpu_model), gpu_d, [0.0, 0.5], gpu_batches, F.cross_entropy)
    assert line["loss"] == pytest.approx(slice_1d(model, trainable(model), cpu_d, [0.0, 0.5], batches,
                                                   F.cross_entropy)["loss"], rel=1e-9)
