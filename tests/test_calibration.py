"""Calibration: the ECE is the binned formula, temperature scaling undoes a known over-confidence, and a trained
classifier records ``test/ece``, its reliability diagram and ``evaluate --temperature-scale``'s calibration.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torchmetrics.classification import MulticlassCalibrationError

from experiments import evaluate as ev
from experiments.reporting.aggregate import is_bounded
from experiments.tasks.calibration import (
    N_BINS,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    reliability_figure,
    top1,
)

pytest_plugins = ["tests.trained_run"]


def _hand_ece(confidence: list[float], correct: list[bool], n_bins: int = N_BINS) -> float:
    """The definition, one bin at a time: sum over bins of |B|/n * |accuracy(B) - mean confidence(B)|, with bin k
    holding the confidences in [k/M, (k+1)/M)."""
    total = 0.0
    for k in range(n_bins):
        members = [i for i, c in enumerate(confidence) if k / n_bins <= c < (k + 1) / n_bins]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_conf = sum(confidence[i] for i in members) / len(members)
            total += len(members) / len(confidence) * abs(accuracy - mean_conf)
    return total


def test_ece_of_hand_made_logits_is_the_binned_formula() -> None:
    # logits = log(probabilities): softmax gives these rows back exactly. Four images at confidence 0.9 (three right)
    # and two at 0.6 (one right): ECE = 4/6 * |3/4 - 0.9| + 2/6 * |1/2 - 0.6| = 0.1 + 1/30
    probabilities = torch.tensor([[0.9, 0.05, 0.05]] * 4 + [[0.6, 0.3, 0.1]] * 2, dtype=torch.float64)
    targets = torch.tensor([0, 0, 0, 1, 0, 2])
    expected = 4 / 6 * abs(3 / 4 - 0.9) + 2 / 6 * abs(1 / 2 - 0.6)
    assert expected_calibration_error(probabilities.log(), targets) == pytest.approx(expected, abs=1e-6)
    bins = reliability_bins(*top1(probabilities, targets))
    assert bins.ece() == pytest.approx(expected, abs=1e-6)  # float32 confidences
    assert bins.total == 6 and sum(c > 0 for c in bins.counts) == 2
    filled = [k for k, c in enumerate(bins.counts) if c]
    assert [bins.counts[k] for k in filled] == [2, 4]  # 0.6 in bin 9 ([0.6, 0.667)), 0.9 in bin 13
    assert [bins.accuracy[k] for k in filled] == pytest.approx([0.5, 0.75])

    # random logits: torchmetrics' metric (what the task logs, fed probabilities), our bins and the loop agree
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 4, generator=generator, dtype=torch.float64) * 2
    targets = torch.randint(0, 4, (500,), generator=generator)
    confidence, correct = top1(logits.softmax(dim=1), targets)
    hand = _hand_ece(confidence.tolist(), [bool(c) for c in correct.tolist()])
    metric = MulticlassCalibrationError(4, n_bins=N_BINS, norm="l1")
    for chunk in range(0, 500, 128):  # accumulated batch by batch, as on the test split
        metric.update(logits[chunk : chunk + 128].softmax(dim=1), targets[chunk : chunk + 128])
    assert float(metric.compute()) == pytest.approx(hand, abs=1e-6)
    assert expected_calibration_error(logits, targets) == pytest.approx(hand, abs=1e-6)
    assert reliability_bins(confidence, correct).ece() == pytest.approx(hand, abs=1e-9)
    assert 0.0 < hand < 1.0 and is_bounded("test/ece") and is_bounded("test/ece_scaled")
    reliability_figure(reliability_bins(confidence, correct), hand)  # draws without pyplot


def test_temperature_scaling_recovers_an_over_confidence_of_five() -> None:
    # labels drawn from softmax(z): z is calibrated by construction, so 5 z is over-confident by a temperature of 5
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(6000, 5, generator=generator, dtype=torch.float64) * 1.5
    labels = torch.multinomial(z.softmax(dim=1), 1, generator=generator).squeeze(1)
    over = 5 * z
    temperature = fit_temperature(over[:3000], labels[:3000])
    assert temperature == pytest.approx(5.0, rel=0.1)
    before = calibration_metrics(over[3000:], labels[3000:])
    after = calibration_metrics(over[3000:], labels[3000:], temperature)
    assert after["acc"] == before["acc"]  # T keeps every argmax
    assert after["nll"] < 0.8 * before["nll"]
    assert after["ece"] < 0.5 * before["ece"] and after["ece"] < 0.05
    assert before["ece"] > 0.1  # the over-confidence was there to remove


def test_a_trained_run_records_ece_and_temperature_scaling_writes_calibration_json(trained_run, capsys) -> None:
    run, record = trained_run
    ece = record["metrics"]["test/ece"]
    assert 0.0 <= ece <= 1.0
    with Image.open(run / "figures" / "reliability.png") as png:
        assert png.size[0] > 200 and png.size[1] > 200
    assert not (run / "figures" / "test__reliability").exists()  # the per-step copy took the fixed name

    assert ev.main([str(run), "--temperature-scale"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((run / "calibration.json").read_text())
    temperature = saved["temperature"]
    assert temperature > 0 and math.isfinite(temperature) and f"T={temperature:.4f}" in printed
    before, after = saved["test"]["before"], saved["test"]["after"]
    # the same weights and test split as the run's own test: the same accuracy and ECE
    assert before["acc"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    assert before["ece"] == pytest.approx(ece, abs=1e-4)
    assert after["acc"] == before["acc"]
    assert saved["val"]["nll_after"] <= saved["val"]["nll_before"] + 1e-9  # T minimises the validation NLL
    assert sum(saved["reliability"]["after"]["counts"]) == saved["test_images"] == record["test_count"]
    assert Path(saved["checkpoint"]).resolve() == (run / "checkpoints" / "best.ckpt").resolve()
    assert (run / "figures" / "reliability-temperature-scaled.png").is_file()
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["test/ece_scaled"] == pytest.approx(after["ece"]) and metrics["test/ece"] == ece


def test_temperature_scaling_a_segmentation_run_is_one_sentence(make_cfg, tmp_path: Path, capsys) -> None:
    run = tmp_path / "seg"
    run.mkdir()
    OmegaConf.save(make_cfg(["data=shapes_seg", "model=fcn"], run_dir=run), run / "config.yaml")
    assert ev.main([str(run), "--temperature-scale"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: RUN_DIR=") and "task is segmentation" in err and "\n" not in err
    assert ev.main([str(run), "data.test_noise=0.2", "--temperature-scale"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--temperature-scale=data.test_noise=0.2 is invalid" in err and "\n" not in err
    assert not (run / "calibration.json").exists()
