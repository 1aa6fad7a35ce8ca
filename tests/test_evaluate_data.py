"""``python -m experiments.evaluate RUN data=...``: a trained run tested on other data — another data option, or its
own data with shifted or noisier test images — and a one-sentence refusal of data its network cannot take."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from experiments import evaluate as ev
from experiments.data.shapes import render_shapes

pytest_plugins = ["tests.trained_run"]


def test_the_runs_own_data_unchanged_reproduces_its_test_metrics_and_noise_costs_accuracy(trained_run) -> None:
    run, record = trained_run
    same = ev.evaluate(run, data=["data.test_noise=0"])
    assert same["metrics"]["test/loss"] == pytest.approx(record["metrics"]["test/loss"], abs=1e-6)
    noisy = ev.evaluate(run, data=["data.test_noise=0.5", "data.test_shift=3"])
    saved = json.loads((run / "evaluation-best-on-test_noise=0.5,test_shift=3.json").read_text())
    assert saved["data"] == ["data.test_noise=0.5", "data.test_shift=3"] and saved["metrics"] == noisy["metrics"]
    assert noisy["metrics"]["test/loss"] > same["metrics"]["test/loss"]  # the same images, noisier and moved


def test_another_data_option(trained_run, tmp_path: Path, capsys) -> None:
    """An image folder of shapes (folders named so that their sorted order is the run's class order)."""
    run, _ = trained_run
    kinds = list(ev.load_run_config(run).data.kinds)
    sample = render_shapes(60, 32, 3, seed=7, kinds=kinds)
    for i, (image, label) in enumerate(zip(sample.images, sample.labels, strict=True)):
        folder = tmp_path / "images" / f"{int(label)}_{kinds[label]}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    assert ev.main([str(run), "data=image_folder", f"data.root={tmp_path / 'images'}"]) == 0
    out = capsys.readouterr().out
    assert f"data: data=image_folder data.root={tmp_path / 'images'}" in out
    saved = Path(out.split("saved: ")[1].splitlines()[0].strip())
    assert list((run / "figures").glob("confusion_matrix-evaluation-best-on-image_folder*.png"))
    assert saved.parent == run and saved.name.startswith("evaluation-best-on-image_folder,root=")
    metrics = json.loads(saved.read_text())["metrics"]
    assert 0 <= metrics["test/acc"] <= 1 and metrics["test/loss"] > 0


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        (["data.kinds=[circle,square]"], "data.num_classes=2 is invalid: the run's network predicts 6 classes; "
                                         "evaluate it on data with 6 classes."),
        (["data.channels=1"], "data.channels=1 is invalid: the run's network takes 3-channel images; add "
                              "data.channels=3 (images are converted to it)."),
        (["data=shapes_seg"], "data.task=segmentation is invalid: the run's network predicts for classification"),
        (["data.no_such_key=1"], "data.no_such_key=1 is invalid: the run's data has no such key"),
        (["data=no_such_option"], "data/no_such_option"),
        (["data.test_noise=-1"], "data.test_noise=-1 is invalid"),
    ],
    ids=["classes", "channels", "task", "key", "option", "noise"],
)
def test_data_the_network_cannot_take_is_one_sentence_and_exit_2(trained_run, capsys, options, phrase) -> None:
    run, _ = trained_run
    assert ev.main([str(run), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and phrase in err and "\n" not in err
    assert not list(run.glob("evaluation-*-on-*no_such*"))
