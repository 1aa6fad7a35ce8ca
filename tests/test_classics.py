"""The classics page's claims (src/experiments/classics, docs/classics.md).

Fast tests check every claim that needs no training, on the networks exactly as ``experiments.train`` builds
them (seed 0), including the at-initialisation side of the trained lessons (gradient flow with and without
batch norm or shortcuts, the losses' gradients against their formulas), plus the page machinery (verdicts,
shifted evaluation, figure size limit, page assembly). The slow tests rerun each section at the page's own
budget (its seeds, its margins) through ``python -m experiments.classics --only <section>`` and fail when an
asserted ordering no longer holds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.classics import analytic, claims, evidence, page, shift
from experiments.classics.context import QUICK, Context, Rendered
from experiments.classics.sections import KEYS, activations, batchnorm, depth, losses, pooling, upsampling
from tests.conftest import run_cli

# ------------------------------------------------------------------------------------- no training needed


def test_resnet_parameter_counts_match_he_table6():
    counts = analytic.resnet_parameters()
    for d, published in analytic.HE_TABLE6_PARAMS_M.items():
        assert claims.within(f"ResNet-{d}", counts[d] / 1e6, published, depth.PARAMS_TOLERANCE).holds, (d, counts[d])
    assert counts[20] == 269_722  # 16-32-64 channels, option-A shortcuts, 10 classes: no projection weights


def test_context_module_receptive_field_grows_as_yu_koltun_table1():
    assert analytic.context_receptive_fields() == [3, 5, 9, 17, 33, 65, 67, 67]


def test_transposed_upsampling_starts_as_bilinear_interpolation():
    layers = analytic.transposed_vs_bilinear()
    assert len(layers) == 3  # FCN-8s: two 2x fusions and the final upsampling (3 stages of 2x pooling)
    for factor, difference, scale in layers:
        assert difference <= upsampling.INIT_TOLERANCE, (factor, difference)
        assert scale > 0.5  # the comparison is not between two zero maps


def test_sigmoid_gradients_vanish_at_initialisation_and_xavier_lifts_them():
    ratio = {(a, i): analytic.vanishing_ratio_at_init(["experiment=sigmoid_vs_relu", f"activation={a}", f"init={i}"])
             for a, i in (("sigmoid", "standard"), ("relu", "standard"), ("sigmoid", "xavier"))}
    assert ratio["sigmoid", "standard"] / ratio["relu", "standard"] < activations.VANISHING_BOUND
    assert ratio["sigmoid", "xavier"] > ratio["sigmoid", "standard"]
    assert ratio["relu", "standard"] > 0.05  # rectifiers keep the gradient within an order of magnitude or so


def test_batch_norm_restores_the_sigmoid_nets_gradient_flow_at_initialisation():
    plain = analytic.vanishing_ratio_at_init(["experiment=sigmoid_vs_relu", "activation=sigmoid", "norm=none"])
    normalised = analytic.vanishing_ratio_at_init(["experiment=sigmoid_vs_relu", "activation=sigmoid", "norm=batch"])
    assert normalised > batchnorm.INIT_FACTOR * plain


def test_shortcuts_balance_the_gradient_across_depth_at_initialisation():
    def spread(residual: str) -> float:
        ratio = analytic.vanishing_ratio_at_init(["experiment=plain_vs_residual", "model.depth=56",
                                                  f"model.residual={residual}"])
        return abs(math.log10(ratio))

    assert spread("false") > spread("true") + depth.SPREAD


def test_losses_match_their_gradient_formulas_and_the_quadratic_cost_stalls():
    gradients = analytic.loss_gradients(losses.WRONG_LOGIT)
    for name, (ours, formula) in gradients.items():
        assert ours == pytest.approx(formula, rel=1e-4), name
    assert gradients["mse"][0] < losses.GRADIENT_BOUND * gradients["cross_entropy"][0]
    # not saturated, the two are of one order: the quadratic cost is slow only on confident outputs
    mild = analytic.loss_gradients(0.0)
    assert mild["mse"][0] > 0.05 * mild["cross_entropy"][0]


def test_pooling_reduces_parameters_and_flops():
    max_params, max_flops = analytic.model_cost(["experiment=pooling", "pooling=max"])
    none_params, none_flops = analytic.model_cost(["experiment=pooling", "pooling=none"])
    assert none_params > pooling.PARAMS_FACTOR * max_params
    assert none_flops > max_flops


# --------------------------------------------------------------------------------------- the machinery


class _GlobalColour(nn.Module):
    """Class = brightest colour channel averaged over the image: translation-invariant by construction."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _LeftHalf(nn.Module):
    """Class 1 when the left half is brighter than the right: changes with a horizontal shift."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        left, right = x[..., :half].mean(dim=(1, 2, 3)), x[..., half:].mean(dim=(1, 2, 3))
        return torch.stack([right - left, left - right], dim=1)


def test_shifted_scores_separate_invariant_from_position_dependent_networks():
    torch.manual_seed(0)
    images = torch.zeros(64, 3, 8, 8)
    images[:32, :, :, :2] = 1.0  # a bright stripe at the left edge: class 1
    images[32:, :, :, 4:6] = 1.0  # right of the centre: class 0
    labels = torch.cat([torch.ones(32), torch.zeros(32)]).long()
    colour = images.clone()
    colour[:, 0] += torch.linspace(0, 1, 64)[:, None, None] * 0.1
    invariant = shift.shifted_scores(_GlobalColour(), colour, colour.mean(dim=(2, 3)).argmax(dim=1), (0, 2))
    assert invariant[0] == (1.0, 1.0) and invariant[2] == (1.0, 1.0)
    dependent = shift.shifted_scores(_LeftHalf(), images, labels, (0, 2))
    assert dependent[0] == (1.0, 1.0)
    assert dependent[2][0] < 1.0 and dependent[2][1] < 1.0  # a 2-pixel shift moves stripes across the middle


def test_claims_and_verdicts():
    assert claims.greater("a > b", 2.0, 1.0).holds is True
    assert claims.greater("a > b + 1", 2.0, 1.0, 1.0).holds is False
    assert claims.greater("missing", None, 1.0).holds is None
    assert claims.greater("literature", 1.0, 2.0, asserted=False).as_dict()["asserted"] is False
    assert claims.ratio_below("tiny", 1e-9, 1.0, 1e-3).holds is True
    yes, no, unknown = claims.Claim("y", True, ""), claims.Claim("n", False, ""), claims.Claim("?", None, "")
    assert claims.verdict([yes, yes]) == claims.REPRODUCED
    assert claims.verdict([yes, no]) == claims.PARTLY
    assert claims.verdict([yes, unknown]) == claims.PARTLY  # an unchecked claim is never silently true
    assert claims.verdict([no]) == claims.NOT_REPRODUCED
    assert claims.verdict([unknown]) == claims.UNCHECKED


def test_publish_keeps_committed_figures_under_200_kb(tmp_path: Path):
    from PIL import Image

    noisy = tmp_path / "noisy.png"
    Image.fromarray(torch.randint(0, 256, (700, 700, 3), dtype=torch.uint8).numpy()).save(noisy)
    assert noisy.stat().st_size > evidence.MAX_FIGURE_BYTES
    small = evidence.publish(noisy, tmp_path / "out" / "small.png")
    assert small is not None and small.stat().st_size <= evidence.MAX_FIGURE_BYTES
    with Image.open(small) as image:
        assert image.width > 100  # still a picture
    assert evidence.publish(tmp_path / "absent.png", tmp_path / "out" / "x.png") is None
    thumbnail = tmp_path / "grid.png"
    grid = Image.new("RGB", (3, 2), (10, 20, 30))
    grid.putpixel((1, 0), (200, 0, 0))
    grid.save(thumbnail)
    with Image.open(evidence.publish(thumbnail, tmp_path / "out" / "grid.png", min_width=360)) as image:
        assert image.size == (360, 240)  # enlarged 120x, every source pixel a crisp square
        assert image.getpixel((119, 0)) == (10, 20, 30) and image.getpixel((120, 0)) == (200, 0, 0)


def test_page_lists_every_section_with_its_claims_and_verdict(tmp_path: Path):
    ctx = Context(QUICK, tmp_path / "out", tmp_path / "docs")
    ctx.out.mkdir()
    parts = [
        Rendered("a", "First lesson (Someone 2001)", "Body A.", [claims.Claim("x beats y", True, "2 vs 1")],
                 "it holds"),
        Rendered("b", "Second lesson", "Body B.", [claims.Claim("y beats x", False, "1 vs 2")], "it does not"),
    ]
    written = page.write(ctx, parts, 754.0, "a test machine, 2 cores")
    text = written.read_text()
    assert "## 1. First lesson (Someone 2001)" in text and "## 2. Second lesson" in text
    assert "(#1-first-lesson-someone-2001)" in text  # the contents link GitHub's anchor
    assert "**Verdict: reproduced** (1 of 1 claims hold)" in text and "**Verdict: not reproduced**" in text
    assert "12.6 min" in text and "--quick" in text
    recorded = json.loads((ctx.out / "claims.json").read_text())
    assert recorded["a"]["claims"][0]["holds"] is True and recorded["b"]["verdict"] == claims.NOT_REPRODUCED


def test_unknown_section_is_one_sentence_and_exit_2(tmp_path: Path):
    result = run_cli("experiments.classics", "--quick", "--only", "depth,nonsense", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --only=depth,nonsense names unknown section(s) nonsense")
    assert "Traceback" not in result.stderr


def test_classics_is_a_package_command_whose_help_needs_no_torch(tmp_path: Path):
    """``python -m experiments.classics`` from any directory (the package's own command, not a script of the
    checkout), and its ``--help`` answers without importing torch; the page still goes to the checkout's docs/."""
    probe = ("import sys, runpy; sys.argv = ['experiments.classics', '--help']\n"
             "try:\n    runpy.run_module('experiments.classics', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m experiments.classics" in result.stdout and result.stdout.strip().endswith("NO-TORCH")
    from experiments.classics.context import REPO

    assert (REPO / "docs" / "classics.md").is_file() and (REPO / "conf" / "train.yaml").is_file()


# ------------------------------------------------------------------------------- every claim, trained


@pytest.mark.slow
@pytest.mark.parametrize("section", KEYS)
def test_section_claims_hold_at_the_page_budget(section: str, tmp_path: Path):
    """Minutes per section (about 30 for all, on 2 cores): the page's own runs, seeds and margins."""
    result = run_cli("experiments.classics", "--only", section, "--out", str(tmp_path / "out"),
                     "--docs", str(tmp_path / "docs"), timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    recorded = json.loads((tmp_path / "out" / "claims.json").read_text())[section]
    failed = [c for c in recorded["claims"] if c["asserted"] and c["holds"] is not True]
    assert not failed, json.dumps(failed, indent=2)
    assert (tmp_path / "docs" / "classics.md").is_file()


@pytest.mark.slow
def test_quick_budget_renders_every_section(tmp_path: Path):
    """The smoke run: every command, report, figure and claim of the page runs at the ``--quick`` budget."""
    result = run_cli("experiments.classics", "--quick", "--out", str(tmp_path / "out"), timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = (tmp_path / "out" / "docs" / "classics.md").read_text()
    assert all(f"## {i}. " in text for i in range(1, len(KEYS) + 1))
    assert "Figure missing" not in text
    figures = list((tmp_path / "out" / "docs" / "images" / "classics").glob("*.png"))
    assert len(figures) >= 12 and all(f.stat().st_size <= evidence.MAX_FIGURE_BYTES for f in figures)
