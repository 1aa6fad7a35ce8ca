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


def test_exact_claims_and_verdicts():
    assert claims.greater("a > b", 2.0, 1.0).holds is True
    assert claims.greater("a > b + 1", 2.0, 1.0, 1.0).status == claims.FAILS
    assert claims.greater("missing", None, 1.0).status == claims.NOT_CHECKED
    assert claims.greater("literature", 1.0, 2.0, asserted=False).as_dict()["asserted"] is False
    assert claims.ratio_below("tiny", 1e-9, 1.0, 1e-3).holds is True
    yes, no, unknown = claims.Claim("y", True, ""), claims.Claim("n", False, ""), claims.Claim("?", None, "")
    waiting = claims.Claim("w", None, "", status=claims.UNRESOLVED)
    assert claims.verdict([yes, yes]) == claims.REPRODUCED
    assert claims.verdict([yes, no]) == claims.PARTLY
    assert claims.verdict([yes, unknown]) == claims.PARTLY  # an unchecked claim is never silently true
    assert claims.verdict([yes, waiting]) == claims.PARTLY  # nor an unresolved one
    assert claims.verdict([no]) == claims.NOT_REPRODUCED
    assert claims.verdict([waiting, unknown]) == claims.NOT_RESOLVED  # its own verdict, not a failure
    assert claims.verdict([waiting, no]) == claims.NOT_REPRODUCED
    assert claims.verdict([unknown]) == claims.UNCHECKED
    assert claims.tally([yes, waiting, no]) == "1 of 3 claims hold, 1 not resolved, 1 does not hold"


def test_a_comparative_claim_holds_only_when_holm_and_the_bonferroni_interval_agree():
    """Three seeds, a family of two: the interval is the paired t interval at 1 − 0.05/2 (t_{0.9875, 2} = 6.205),
    the p-values Holm-adjusted over the two (the smaller doubled, the larger kept if larger)."""
    from scipy import stats

    clear = {0: (0.80, 0.50), 1: (0.84, 0.52), 2: (0.79, 0.51)}  # differences 0.30, 0.32, 0.28
    noisy = {0: (0.60, 0.50), 1: (0.45, 0.52), 2: (0.70, 0.51)}  # differences 0.10, -0.07, 0.19
    decided = claims.judge([claims.paired("clear", clear), claims.greater("exact", 1.0, 0.0),
                            claims.paired("noisy", noisy)])
    first, exact, second = decided
    assert exact.status == claims.HOLDS and exact.judgement is None  # not part of the family
    d = [0.30, 0.32, 0.28]
    half = stats.t.ppf(1 - 0.05 / 4, 2) * stats.tstd(d) / math.sqrt(3)
    assert first.judgement.low == pytest.approx(0.30 - half) and first.judgement.high == pytest.approx(0.30 + half)
    assert first.judgement.confidence == pytest.approx(0.975) and first.judgement.family == 2
    p_first = stats.ttest_1samp(d, 0).pvalue
    p_second = stats.ttest_1samp([0.10, -0.07, 0.19], 0).pvalue
    assert first.judgement.p_holm == pytest.approx(min(1, 2 * p_first))
    assert second.judgement.p_holm == pytest.approx(max(min(1, 2 * p_first), p_second))
    assert first.status == claims.HOLDS and first.holds is True
    assert second.status == claims.UNRESOLVED and second.holds is None
    assert "not resolved at 3 seeds" in second.evidence and second.judgement.seeds_needed > 3


def test_a_comparative_claim_is_contradicted_below_its_margin_and_unchecked_without_pairs():
    worse = {0: (0.50, 0.80), 1: (0.52, 0.84), 2: (0.51, 0.79), 3: (0.49, 0.81)}
    margin = {0: (0.60, 0.50), 1: (0.62, 0.51), 2: (0.61, 0.52), 3: (0.60, 0.50)}  # Δ ≈ 0.10, tight
    missing = {0: (None, 0.5), 1: (0.4, None)}
    decided = claims.judge([claims.paired("better", worse), claims.paired("by 0.05", margin, 0.05),
                            claims.paired("by 0.2", margin, 0.2), claims.paired("missing", missing)])
    assert [c.status for c in decided] == [claims.CONTRADICTED, claims.HOLDS, claims.CONTRADICTED,
                                           claims.NOT_CHECKED]
    assert decided[0].holds is False and decided[1].judgement.margin == 0.05
    assert decided[0].judgement.family == 3  # a claim without pairs has no test and is not counted in m
    # two seeds both at chance on both sides: Δ is exactly 0 twice, and no t-test can call that certain
    flat = claims.judge([claims.paired("by 0.05", {0: (0.17, 0.17), 1: (0.17, 0.17)}, 0.05)])[0]
    assert flat.status == claims.UNRESOLVED and flat.judgement.p_value == pytest.approx(0.5)  # sign-flip: 2^(1−2)
    one = claims.judge([claims.one_sample("gap > 0.05", {0: 0.7, 1: 0.6, 2: 0.75}, 0.05)])[0]
    assert one.status == claims.HOLDS and one.judgement.mean == pytest.approx(0.68333, abs=1e-4)


def test_seed_pairs_are_read_by_seed_and_averaged_within_a_seed():
    from types import SimpleNamespace

    def run(seed, acc):
        return SimpleNamespace(seed=seed, metrics={"test/acc": acc})

    left = [run(0, 0.8), run(1, 0.7), run(1, 0.9), run(2, None), run(None, 0.5)]
    right = [run(0, 0.6), run(1, 0.6), run(2, 0.4), run(3, 0.5)]
    value = lambda r: r.metrics["test/acc"]  # noqa: E731
    assert evidence.by_seed(left, value) == {0: 0.8, 1: pytest.approx(0.8)}
    assert evidence.paired_values(left, right, value) == {0: (0.8, 0.6), 1: (pytest.approx(0.8), 0.6)}
    shown = evidence.arm(left, value, True)
    assert shown.n == 2 and 0.0 <= shown.low <= shown.mean <= shown.high <= 1.0  # bounded interval
    wide = evidence.shown([0.05, 0.95, 0.5], True)
    assert wide.low >= 0.0 and wide.high <= 1.0  # a Student t interval would leave [0, 1] here
    assert evidence.bounded("test/acc") and evidence.bounded("val/miou") and not evidence.bounded("test/loss")
    ratio = evidence.geometric([run(0, 1e-8), run(1, 1e-6)], value)
    assert ratio.mean == pytest.approx(1e-7) and ratio.low > 0


def test_a_failed_command_says_what_failed(tmp_path: Path):
    from experiments.classics.context import commands
    from experiments.classics.jobs import Job, last_error

    log = tmp_path / "seed0.log"
    log.write_text("$ python -m experiments.train -m ...\n[2026] Training...\n"
                   "Error executing job with overrides: ['activation=tanh', 'optimizer.lr=0.008']\n"
                   "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                   "FloatingPointError: loss is nan at step 40\n"
                   "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n")
    assert last_error(log) == "['activation=tanh', 'optimizer.lr=0.008'] → FloatingPointError: loss is nan at step 40"
    sweep = tmp_path / "runs" / "seed0"
    for job_num, status in (("0", "completed"), ("1", "failed")):
        (sweep / job_num).mkdir(parents=True)
        (sweep / job_num / "metrics.json").write_text(json.dumps({"status": status}))
    job = Job("s", "seed0", ["-m", "experiments.train", "-m", f"hydra.sweep.dir={sweep}"], log, returncode=1)
    text = commands([job, Job("s", "ok", ["-m", "experiments.report"], tmp_path / "ok.log", returncode=0)], str)
    assert "# FAILED (exit 1; see below)" in text
    assert "1 of 2 runs did not complete" in text and "FloatingPointError: loss is nan at step 40" in text
    plain = tmp_path / "plain.log"
    plain.write_text("something went wrong\n\n")
    assert last_error(plain) == "something went wrong" and last_error(tmp_path / "absent.log") is None


def test_seed_counts_raise_a_sections_seeds_and_the_plan_prints_them(tmp_path: Path, capsys):
    from experiments.classics.__main__ import main
    from experiments.classics.context import FULL, Budget

    ctx = Context(FULL, tmp_path, tmp_path / "docs", seed_counts={"losses": 6})
    ctx.section = "losses"
    assert ctx.pick({FULL: Budget((0, 1, 2), ("a=1",))}).seeds == (0, 1, 2, 3, 4, 5)
    ctx.section = "batchnorm"
    assert ctx.pick({FULL: Budget((0, 1, 2), ("a=1",))}).seeds == (0, 1, 2)
    (tmp_path / "claims.json").write_text(json.dumps({"losses": {"claims": [
        {"statement": "ce faster", "status": "not resolved", "judgement": {"n": 3, "seeds_needed": 9}}]}}))
    assert main(["--plan", "--only", "losses", "--seeds", "losses=5", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "losses: seeds 0,1,2,3,4 (n=5), 6 commands" in printed
    assert "the planner asks for 9 seeds (--seeds losses=9)" in printed
    assert "min on 2 cores" in printed and "45-min budget" in printed
    assert main(["--plan", "--seeds", "losses=three"]) == 2


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
        Rendered("c", "Third lesson", "Body C.", [claims.Claim("z beats x", None, "n=3", status=claims.UNRESOLVED)],
                 "awaits seeds"),
    ]
    written = page.write(ctx, parts, 754.0, "a test machine, 2 cores")
    text = written.read_text()
    assert "## 1. First lesson (Someone 2001)" in text and "## 2. Second lesson" in text
    assert "(#1-first-lesson-someone-2001)" in text  # the contents link GitHub's anchor
    assert "**Verdict: reproduced** (1 of 1 claims hold)" in text and "**Verdict: not reproduced**" in text
    assert "12.6 min" in text and "--quick" in text
    assert "python -m experiments.classics" in text and "benchmarks.classics" not in text
    assert "logit-t" in text and "Holm" in text and "Bonferroni" in text  # how intervals and claims are judged
    assert "**Verdict: not resolved** (0 of 1 claims hold, 1 not resolved)" in text and "- ⚪ *z beats x*" in text
    recorded = json.loads((ctx.out / "claims.json").read_text())
    assert recorded["a"]["claims"][0]["holds"] is True and recorded["b"]["verdict"] == claims.NOT_REPRODUCED
    assert recorded["c"]["claims"][0]["status"] == claims.UNRESOLVED


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
    # an asserted claim may await seeds (grey on the page, with the planner's count), never be wrong or unchecked
    failed = [c for c in recorded["claims"] if c["asserted"] and c["status"] not in (claims.HOLDS, claims.UNRESOLVED)]
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
