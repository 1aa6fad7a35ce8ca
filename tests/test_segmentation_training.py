"""Segmentation end to end: per-pixel losses, model/data agreement, metrics and images read back, the headline run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from experiments.build import build_datamodule, build_task
from experiments.config import compose
from experiments.errors import ConfigError
from experiments.run.predict import mask_image
from experiments.tasks.losses import CrossEntropy, DiceLoss, FocalLoss, QuadraticCost
from experiments.tasks.segmentation import palette, sample_grid
from experiments.train import train
from experiments.validation import validate
from tests.conftest import run_cli

# ---------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("loss", [CrossEntropy(), FocalLoss(2.0), QuadraticCost(), DiceLoss()], ids=type)
def test_every_loss_works_per_pixel(loss: torch.nn.Module) -> None:
    """(N, C, H, W) logits against (N, H, W) masks give the same value as the flattened per-pixel problem."""
    logits, target = torch.randn(2, 5, 6, 7), torch.randint(0, 5, (2, 6, 7))
    flat = loss(logits.permute(0, 2, 3, 1).reshape(-1, 5), target.reshape(-1))
    assert loss(logits, target).item() == pytest.approx(flat.item(), rel=1e-5)


def test_dice_loss_matches_its_formula() -> None:
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2 classes, 1, 2 pixels)
    target = torch.tensor([[[0, 0]]])
    p = logits.softmax(1)[0, :, 0]  # (2 classes, 2 pixels)
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    dice = (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)
    assert DiceLoss(smooth=1.0)(logits, target).item() == pytest.approx(1 - dice.mean().item(), rel=1e-6)
    confident = F.one_hot(torch.tensor([[[0, 1]]]), 2).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss(smooth=0.0)(confident, torch.tensor([[[0, 1]]])).item() == pytest.approx(0.0, abs=1e-6)
    assert DiceLoss(smooth=0.0)(-confident, torch.tensor([[[0, 1]]])).item() == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- config


def test_a_segmentation_model_picks_segmentation_data_unless_data_is_named() -> None:
    for option in ("fcn", "dilated"):
        cfg = compose([f"model={option}"])
        validate(cfg)
        assert cfg.data.task == "segmentation" and cfg.data.image_size == 64
        assert cfg.data.num_classes == len(cfg.data.kinds) + 1  # + background
    assert compose(["model=fcn"]).upsampling.name == "transposed"  # Long et al.'s learnable deconvolution
    assert compose(["model=dilated"]).upsampling.name == "bilinear"  # Yu & Koltun's interpolation
    assert compose(["model=fcn", "upsampling=unpool"]).upsampling.name == "unpool"  # the command line wins
    assert compose(["model=fcn", "data=shapes"]).data.task == "classification"


@pytest.mark.parametrize(
    ("overrides", "start", "fix"),
    [
        (["model=fcn", "data=shapes"], "data.task=classification is invalid: model=fcn", "use data=shapes_seg"),
        (["model=dilated", "data=shapes"], "data.task=classification is invalid: model=dilated", "data=shapes_seg"),
        (["model=cnn", "data=shapes_seg"], "data.task=segmentation is invalid: model=cnn", "use model=fcn"),
        (["model=resnet", "data=shapes_seg"], "data.task=segmentation is invalid: model=resnet", "model=dilated"),
    ],
)
def test_model_and_data_must_agree(overrides: list[str], start: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose(overrides))
    message = str(info.value)
    assert message.startswith(start) and fix in message
    assert message.count("\n") == 0 and message.endswith(".")


def test_shapes_seg_is_deterministic_with_several_shapes_per_image() -> None:
    cfg = compose(["model=fcn", "data.train_size=64", "data.val_size=8", "data.test_size=8"])
    first, second = build_datamodule(cfg), build_datamodule(cfg)
    first.setup(), second.setup()
    x, masks = first.splits["train"].tensors
    assert x.shape == (64, 3, 64, 64) and masks.shape == (64, 64, 64) and masks.dtype == torch.int64
    assert torch.equal(x, second.splits["train"].tensors[0]) and torch.equal(masks, second.splits["train"].tensors[1])
    assert int(masks.max()) == cfg.data.num_classes - 1 and int(masks.min()) == 0
    kinds_per_image = [len(m.unique()) - 1 for m in masks]
    assert max(kinds_per_image) >= 2  # several shapes, of different kinds, in one image


# ---------------------------------------------------------------------------------------------- training

FAST = ["+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]


def test_segmentation_run_logs_metrics_per_class_iou_and_sample_images(make_cfg) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(["model=dilated", "trainer.max_epochs=2", "diagnostics=off", *FAST])
    record = train(cfg)
    assert record["status"] == "completed" and record["task"] == "segmentation"
    metrics = json.loads((Path(cfg.run_dir) / "metrics.json").read_text())["metrics"]
    for key in ("train/loss", "train/miou", "train/pixel_acc", "val/miou", "val/pixel_acc", "test/miou",
                "val/best_miou", "test/iou_background", *(f"test/iou_{k}" for k in cfg.data.kinds)):
        assert metrics.get(key) is not None, key
    per_class = [metrics[f"test/iou_{k}"] for k in ("background", *cfg.data.kinds)]
    assert metrics["test/miou"] == pytest.approx(sum(per_class) / len(per_class), abs=1e-5)  # macro mean

    from experiments.run.layout import RunDir

    events = EventAccumulator(str(RunDir(cfg.run_dir).tensorboard_events()), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("val/samples")
    assert len(images) == 2  # one grid per validation epoch
    from PIL import Image

    grid = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert grid.size == (3 * 64, 4 * 64)  # input | ground truth | prediction, for 4 fixed samples
    # the same grids are PNGs in the run dir, whatever the logger
    pngs = sorted((Path(cfg.run_dir) / "figures" / "val__samples").glob("step_*.png"))
    assert len(pngs) == 2 and (Image.open(pngs[-1]).tobytes() == grid.convert("RGB").tobytes())


def test_csv_logger_runs_and_keeps_sample_images_as_pngs(make_cfg) -> None:
    cfg = make_cfg(["model=fcn", "logger=csv", "diagnostics=off", "upsampling=unpool", *FAST])
    assert train(cfg)["metrics"]["val/miou"] is not None
    assert list((Path(cfg.run_dir) / "figures" / "val__samples").glob("step_*.png"))


def test_predict_returns_per_pixel_probabilities() -> None:
    cfg = compose(["model=fcn", "data.train_size=16", "data.val_size=4", "data.test_size=4"])
    task = build_task(cfg).eval()
    x = torch.randn(3, 3, 33, 35)
    with torch.no_grad():
        probs = task.predict_step((x, None), 0)
    assert probs.shape == (3, cfg.data.num_classes, 33, 35)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3, 33, 35))


def test_sample_grid_colours_classes_and_scales_inputs() -> None:
    colours = palette(5)
    assert colours[0].tolist() == [0.0, 0.0, 0.0] and len({tuple(c.tolist()) for c in colours}) == 5
    images, masks = torch.randn(2, 3, 4, 4) * 5, torch.randint(0, 5, (2, 4, 4))
    grid = sample_grid(images, masks, masks, 5)
    assert grid.shape == (3, 8, 12) and grid.min() >= 0 and grid.max() <= 1
    torch.testing.assert_close(grid[:, :4, 4:8], grid[:, :4, 8:])  # a perfect prediction looks like the truth
    gray = sample_grid(torch.randn(1, 1, 4, 4), masks[:1], masks[:1], 5)
    assert gray.shape == (3, 4, 12) and torch.equal(gray[0, :, :4], gray[1, :, :4])


def test_a_class_has_the_same_colour_in_tensorboard_grids_and_predicted_mask_pngs() -> None:
    """The sample grid as TensorBoard encodes it (``summary.image``, what ``add_image`` writes) against the PNG of
    ``evaluate --predict``: the ground-truth column's pixel of class k is the mask PNG's pixel of class k."""
    from PIL import Image
    from torch.utils.tensorboard.summary import image as image_summary

    num_classes = 7  # shapes_seg: background + 6 kinds
    masks = torch.arange(num_classes).view(1, 1, num_classes).expand(1, 2, num_classes)  # one column per class
    grid = sample_grid(torch.randn(1, 3, 2, num_classes), masks, masks, num_classes)
    encoded = image_summary("val/samples", grid, dataformats="CHW").value[0].image.encoded_image_string
    written = Image.open(io.BytesIO(encoded)).convert("RGB")
    png = mask_image(masks[0]).convert("RGB")
    for k in range(num_classes):
        shown = written.getpixel((num_classes + k, 0))  # ground-truth column starts after the input's width
        assert shown == png.getpixel((k, 0)) == tuple(palette(num_classes)[k].tolist()), k
    assert len({png.getpixel((k, 0)) for k in range(num_classes)}) == num_classes
    assert torch.equal(palette(3), palette(num_classes)[:3])  # a class's colour does not depend on the class count


def headline(run_dir: Path, *budget: str) -> dict:
    result = run_cli("experiments.train", "model=fcn", "activation=leaky_relu", *budget,
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"run dir: {run_dir}" in result.stdout
    return json.loads((run_dir / "metrics.json").read_text())


def test_headline_command_with_a_reduced_budget_learns(make_cfg, tmp_path: Path) -> None:
    """The README's command (composed in-process, as the CLI would; the slow test below runs the CLI itself), seed
    fixed, on 1/8 of the data for 2 of the 8 epochs (smaller batches: more steps): mean IoU clearly above the best
    that predicting background everywhere can score (0.32 measured; the full budget's 0.80 is the slow test below)."""
    cfg = make_cfg(["model=fcn", "activation=leaky_relu", "seed=0", "data.train_size=384", "data.val_size=64",
                    "data.test_size=64", "data.batch_size=8", "trainer.max_epochs=2",
                    "trainer.enable_progress_bar=false"], tiny=False, run_dir=tmp_path / "run")
    train(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["status"] == "completed"
    assert saved["choices"]["model"] == "fcn" and saved["choices"]["upsampling"] == "transposed"
    assert saved["choices"]["data"] == "shapes_seg"
    history = saved["history"]["val/miou"]
    assert len(history) == 2 and history[-1] > history[0]
    background_only = 1 / 5  # at most: IoU 1 on the background, 0 on the four shapes
    assert saved["metrics"]["val/miou"] >= 1.25 * background_only


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fcn", "dilated"])
def test_headline_reaches_080_mean_iou_within_three_minutes(tmp_path: Path, model: str) -> None:
    """The full default budget (an idle 2-core machine: about two minutes each)."""
    run_dir = tmp_path / model
    result = run_cli("experiments.train", f"model={model}", "activation=leaky_relu",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["metrics"]["val/miou"] >= 0.80
    assert saved["wall_time_s"] <= 180
