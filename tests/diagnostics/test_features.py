"""Kernels and feature maps as images (diagnostics/features.py): the grid's layout and colour scale, read back from
TensorBoard's event file and figures/, and a layer name the model lacks refused before training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from experiments.diagnostics.features import (
    FeatureMaps,
    first_conv,
    has_stages,
    kernel_grid,
    kernel_layout,
    stage_outputs,
)
from experiments.errors import ConfigError
from experiments.run.layout import RunDir
from experiments.run.tensorboard import tensorboard_tag
from tests.diagnostics.tiny import TinyTask, batches, fit


def test_rgb_kernels_tile_a_near_square_grid_on_a_scale_symmetric_around_zero() -> None:
    weight = torch.zeros(10, 3, 3, 3)
    weight[0, 0, 0, 0], weight[1, 2, 1, 1] = 2.0, -2.0  # the layer's extremes
    weight[2, 1, 2, 2] = 1.0
    assert kernel_layout(weight) == (3, 4, True)  # 10 tiles: 4 columns, 3 rows
    image = kernel_grid(weight, scale=4, gap=1)
    assert image.shape == (3 * (12 + 1) + 1, 4 * (12 + 1) + 1, 3) and image.dtype == np.uint8

    def tile(o: int) -> np.ndarray:  # (3, 3, 3): one pixel per weight, from the top-left of its 4x4 block
        top, left = 1 + (o // 4) * 13, 1 + (o % 4) * 13
        return image[top:top + 12:4, left:left + 12:4]

    assert tuple(tile(0)[0, 0]) == (255, 128, 128)  # +max in red; zeros mid-grey
    assert tuple(tile(1)[1, 1]) == (128, 128, 1)  # -max in blue
    assert tuple(tile(2)[2, 2]) == (128, round(128 + 127 / 2), 128)
    assert (tile(9) == 128).all()  # an all-zero kernel is grey
    assert (image[0] == 255).all() and (image[:, 0] == 255).all()  # white lines between tiles
    assert (image[-13:, -13:] == 255).all()  # the 12th cell of the 3x4 grid is empty


def test_other_input_counts_give_one_grey_row_per_output_channel() -> None:
    assert kernel_layout(torch.zeros(5, 2, 3, 3)) == (5, 2, False)
    assert kernel_layout(torch.zeros(7, 1, 5, 5)) == (3, 3, False)
    image = kernel_grid(torch.randn(5, 2, 3, 3), scale=2, gap=1)
    assert image.shape == (5 * 7 + 1, 2 * 7 + 1, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def test_stages_of_every_model_with_an_encoder(make_cfg) -> None:
    from experiments.build import build_network

    x = torch.randn(2, 3, 32, 32)
    for model, sizes in (("cnn", [16, 8, 4]), ("resnet", [32, 16, 8]), ("fcn", [16, 8, 4]), ("dilated", [16, 8]),
                         ("autoencoder", [16, 8, 4])):
        network = build_network(make_cfg([f"model={model}"])).eval()
        assert has_stages(network) and first_conv(network) in ("encoder.stages.0.convs.0.0", "stem.0")
        with torch.no_grad():
            assert [o.shape[-1] for o in stage_outputs(network, x)] == sizes, model


def test_kernels_reach_tensorboard_and_figures_at_initialisation(tmp_path: Path) -> None:
    network = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    data = batches((8, 3, 8, 8))
    network(data[0])  # materialise the lazy layer
    callback = FeatureMaps(layers=["2"], images=0)
    fit(TinyTask(network), [callback], data, steps=2, log_dir=tmp_path)

    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    first = events.Images(tensorboard_tag("diagnostics/kernels/0"))
    second = events.Images(tensorboard_tag("diagnostics/kernels/2"))
    assert [e.step for e in first] == [0] and [e.step for e in second] == [0]
    # 6 RGB tiles: a 2x3 grid of 3x3 kernels at 8 px a weight; the 6x4 layer: 4 rows of 6 grey tiles
    assert (first[0].height, first[0].width) == (2 * 25 + 1, 3 * 25 + 1)
    assert (second[0].height, second[0].width) == (4 * 25 + 1, 6 * 25 + 1)
    png = RunDir(tmp_path).figure("diagnostics/kernels/0", 0)
    from PIL import Image

    assert png.is_file() and np.asarray(Image.open(png)).shape == (51, 76, 3)


def test_a_layer_the_model_lacks_is_one_sentence_before_training() -> None:
    network = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(ConfigError, match=r"^diagnostics\.features\.layers=.*'encoder.stages.1' is not a conv layer "
                                          r"of this Sequential \(its first conv layers: 0\)"):
        FeatureMaps(layers=["encoder.stages.1"]).setup(None, TinyTask(network), "fit")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^diagnostics\.features\.every_n_epochs=0 is invalid"):
        FeatureMaps(every_n_epochs=0).setup(None, TinyTask(network), "fit")  # type: ignore[arg-type]


@pytest.mark.slow  # diagnostics=full's own test (test_diagnostics_training.py) trains with this callback by default
def test_a_full_diagnostics_run_draws_kernels_and_stage_maps_each_epoch(make_cfg) -> None:
    from experiments.train import train

    cfg = make_cfg(["diagnostics=full", "trainer.max_epochs=2", "+trainer.limit_train_batches=2",
                    "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "print_config=false",
                    "diagnostics.features.layers=[encoder.stages.1.convs.0.0]", "model.width=4"])
    assert train(cfg)["status"] == "completed"
    run = RunDir(cfg.run_dir)
    for tag in ("diagnostics/kernels/encoder.stages.0.convs.0.0", "diagnostics/kernels/encoder.stages.1.convs.0.0",
                "diagnostics/feature_maps"):
        assert [p.name for p in sorted(run.figure(tag, 0).parent.glob("*.png"))] == [
            "step_000000.png", "step_000002.png", "step_000004.png"], tag
    events = EventAccumulator(str(run.tensorboard_events()), size_guidance={"images": 0}).Reload()
    kernels = events.Images(tensorboard_tag("diagnostics/kernels/encoder.stages.0.convs.0.0"))
    assert [e.step for e in kernels] == [0, 2, 4]
    side = math.ceil(math.sqrt(4))  # 4 output channels of 3 inputs: a 2x2 grid of RGB tiles
    assert (kernels[0].height, kernels[0].width) == (side * 25 + 1, side * 25 + 1)
