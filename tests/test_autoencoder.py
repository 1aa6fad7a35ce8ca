"""model=autoencoder and the reconstruction task: exact sizes for every upsampling (odd ones too), losses and PSNR by
their formulas, the reconstruction loss falling on shapes, input/reconstruction pairs in TensorBoard and figures/,
and evaluate / predict / inspect on an autoencoder run as on any other."""

from __future__ import annotations

import csv
import json
import math
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments import evaluate as ev
from experiments.config import compose
from experiments.errors import ConfigError, RunInterrupted
from experiments.layers.activation import activation_factory
from experiments.layers.norm import norm_factory
from experiments.layers.pooling import pooling_factory
from experiments.layers.upsampling import UPSAMPLINGS, upsampling_factory
from experiments.models.autoencoder import Autoencoder
from experiments.models.cnn import CNN
from experiments.run.layout import RunDir
from experiments.specs import EncoderSpec
from experiments.tasks.reconstruction import PixelBCE, PixelMSE, ReconstructionTask
from experiments.train import train
from experiments.validation import run_task, validate

pytest_plugins = ["tests.autoencoder_run"]


def tiny_autoencoder(upsampling: str, pooling: str = "max", **kwargs) -> Autoencoder:
    return Autoencoder(3, activation_factory("relu"), pooling_factory(pooling), upsampling_factory(upsampling),
                       EncoderSpec(stages=3, width=4), bottleneck=6, **kwargs)


@pytest.mark.parametrize("size", [32, 33, 29, 17])
@pytest.mark.parametrize("upsampling", UPSAMPLINGS)
def test_every_upsampling_reconstructs_the_exact_input_size_and_trains_a_step(upsampling: str, size: int) -> None:
    torch.manual_seed(0)
    net = tiny_autoencoder(upsampling).train()
    x = torch.randn(4, 3, size, size + 2)  # not square either
    out = net(x)
    assert out.shape == x.shape
    loss = F.mse_loss(out, x)
    first = net.encoder.stages[0].convs[0][0].weight
    before, head = first.detach().clone(), net.head.weight.detach().clone()
    loss.backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert torch.isfinite(loss)
    assert not torch.equal(first, before) and not torch.equal(net.head.weight, head)  # gradient reached both ends


def test_unpool_decoder_uses_the_encoders_own_indices() -> None:
    """The encoder's max-pools record where their maxima were, and the decoder puts values back there."""
    net = tiny_autoencoder("unpool")
    assert net.with_indices and all(stage.pool.return_indices for stage in net.encoder.stages)
    assert not tiny_autoencoder("bilinear").with_indices


def test_the_encoder_is_the_cnns_encoder_name_for_name_and_shape_for_shape() -> None:
    """What makes encoder_from work: an autoencoder's encoder weights fit a cnn with the same encoder keys."""
    act, pool = activation_factory("relu"), pooling_factory("max")
    spec = EncoderSpec(stages=3, width=8)
    ae = Autoencoder(3, act, pool, upsampling_factory("unpool"), spec, norm_layer=norm_factory("batch"))
    cnn = CNN(3, 6, 32, act, pool, spec, norm_layer=norm_factory("batch"))
    shapes = {k: tuple(v.shape) for k, v in ae.encoder.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in cnn.encoder.state_dict().items()}
    cnn.encoder.load_state_dict(ae.encoder.state_dict())


def test_bottleneck_sets_the_code_width_and_null_removes_it() -> None:
    squeezed = tiny_autoencoder("nearest")
    assert squeezed.bottleneck[0][0].out_channels == 6
    plain = Autoencoder(3, activation_factory("relu"), pooling_factory("max"), upsampling_factory("nearest"),
                        EncoderSpec(stages=2, width=4), bottleneck=None)
    assert isinstance(plain.bottleneck, torch.nn.Identity)
    assert plain(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)


def test_denoising_noise_only_in_training_mode() -> None:
    net = tiny_autoencoder("bilinear", noise_std=0.5)
    x = torch.zeros(2, 3, 8, 8)
    torch.manual_seed(0)
    noisy = net.train().corrupt(x)
    assert noisy.std().item() == pytest.approx(0.5, rel=0.2)
    assert torch.equal(net.eval().corrupt(x), x)  # evaluation and the probe see the clean input
    with pytest.raises(ValueError, match="noise_std"):
        tiny_autoencoder("bilinear", noise_std=-1.0)


def _task(loss: torch.nn.Module) -> ReconstructionTask:
    task = ReconstructionTask(tiny_autoencoder("bilinear"), loss, optimizer=lambda p: torch.optim.SGD(p, 0.1))
    task.set_pixel_stats([0.5, 0.4, 0.3], [0.2, 0.25, 0.1])
    return task


def test_pixel_mse_is_the_mean_squared_error_on_the_standardised_input() -> None:
    out, x = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    assert PixelMSE()(out, x).item() == pytest.approx(((out - x) ** 2).mean().item())


def test_pixel_bce_reconstructs_the_pixels_behind_the_standardised_input() -> None:
    """BCE's target is x * std + mean in [0, 1] (the data's own pixels), its reconstruction sigmoid(output)."""
    task = _task(PixelBCE())
    pixels = torch.rand(2, 3, 5, 5)
    x = (pixels - task.pixel_mean) / task.pixel_std
    torch.testing.assert_close(task.to_pixels(x), pixels)
    out = torch.randn(2, 3, 5, 5)
    expected = -(pixels * out.sigmoid().log() + (1 - pixels) * (1 - out.sigmoid()).log()).mean()
    assert PixelBCE()(out, pixels).item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(task.reconstruct_pixels(out), out.sigmoid())


def test_psnr_is_ten_log10_of_one_over_the_pixel_mse() -> None:
    """Under either loss the metric compares [0, 1] pixels: the clamped un-standardised reconstruction."""
    task = _task(PixelMSE())
    pixels = torch.rand(4, 3, 6, 6)
    x = (pixels - task.pixel_mean) / task.pixel_std
    out = x + 0.3 * torch.randn_like(x)
    recon = (out * task.pixel_std + task.pixel_mean).clamp(0, 1)
    expected = 10 * math.log10(1 / ((recon - pixels) ** 2).mean().item())
    task.val_metrics.update(task.reconstruct_pixels(out), task.to_pixels(x))
    assert task.val_metrics.compute()["val/psnr"].item() == pytest.approx(expected, rel=1e-5)


def test_a_classification_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="not a reconstruction loss"):
        ReconstructionTask(tiny_autoencoder("bilinear"), torch.nn.CrossEntropyLoss(), lambda p: None)


def test_the_model_sets_the_task_whatever_the_data() -> None:
    for data in ("shapes", "shapes_seg"):
        cfg = compose(["model=autoencoder", f"data={data}"])
        validate(cfg)
        assert run_task(cfg) == "reconstruction" and cfg.loss._target_.endswith("PixelMSE")
    assert run_task(compose([])) == "classification"


def test_reconstruction_loss_falls_and_samples_are_logged(autoencoder_run) -> None:
    run, record = autoencoder_run
    assert record["task"] == "reconstruction"
    val_loss, psnr = record["history"]["val/loss"], record["history"]["val/psnr"]
    # measured (seed 0): 0.28 -> 0.17 and 15.4 -> 17.6 dB in the three epochs
    assert val_loss[-1] < 0.7 * val_loss[0]
    assert psnr[-1] > psnr[0] + 1.5
    assert record["metrics"]["val/best_psnr"] == pytest.approx(max(psnr))
    assert record["metrics"]["test/psnr"] > 15
    pngs = sorted((run / "figures" / "val__reconstructions").glob("step_*.png"))
    assert len(pngs) == 3  # one input | reconstruction grid per validation epoch
    with Image.open(pngs[-1]) as grid:
        assert grid.size == (2 * 32, 4 * 32)  # 4 fixed samples, input | reconstruction
    events = EventAccumulator(str(RunDir(run).tensorboard_events()), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("val/reconstructions")) == 3


def test_evaluate_reproduces_and_predict_writes_reconstructions(autoencoder_run, tmp_path: Path) -> None:
    run, record = autoencoder_run
    tested = ev.evaluate(run)
    assert tested["metrics"]["test/psnr"] == pytest.approx(record["metrics"]["test/psnr"], abs=1e-4)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((torch.rand(40, 40, 3) * 255).byte().numpy()).save(folder / f"im{i}.png")
    table = ev.predict(run, folder, tmp_path / "out")
    rows = list(csv.DictReader(table.open()))
    assert [r["file"] for r in rows] == ["im0.png", "im1.png"] and all(math.isfinite(float(r["psnr"])) for r in rows)
    with Image.open(tmp_path / "out" / rows[0]["reconstruction"]) as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_inspect_reads_a_trained_autoencoder_like_any_model(autoencoder_run, capsys) -> None:
    from experiments.inspect import main as inspect_main

    run, _ = autoencoder_run
    checkpoint = RunDir(run).best_checkpoint
    assert inspect_main(["model=autoencoder", "pooling=avg", "--format", "json", "--ckpt", str(checkpoint)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "Autoencoder" and summary["output_shape"] == summary["input_shape"]
    assert summary["rf"] > 32  # every output pixel sees the whole 32 px input through the 4x4 code


def test_bad_autoencoder_settings_are_one_sentence() -> None:
    cases = [
        (["model=autoencoder", "loss=cross_entropy"], "loss=cross_entropy is invalid: model=autoencoder reconstructs"),
        (["loss=pixel_mse"], "loss=pixel_mse is invalid: a reconstruction loss"),
        (["model=autoencoder", "model.bottleneck=0"], "model.bottleneck=0 is invalid"),
        (["model=autoencoder", "model.noise_std=-0.1"], "model.noise_std=-0.1 is invalid"),
        (["model=autoencoder", "upsampling=unpool", "pooling=avg"], "pooling=avg is invalid"),
    ]
    for overrides, start in cases:
        with pytest.raises(ConfigError) as info:
            validate(compose(overrides))
        assert str(info.value).startswith(start), str(info.value)


def test_a_denoising_run_stopped_mid_epoch_resumes_exactly(make_cfg, tmp_path: Path) -> None:
    """The input noise is drawn from the global generator, which the resume state restores: the continued run's
    every number is the uninterrupted run's."""
    base = ["model=autoencoder", "model.noise_std=0.3", "model.width=8", "data.train_size=128", "data.val_size=32",
            "data.test_size=32", "trainer.max_epochs=2", "diagnostics=off"]
    stop = ["+callbacks.stop._target_=tests.probes.SelfSignal", "+callbacks.stop.at_step=5",
            f"+callbacks.stop.signum={int(signal.SIGINT)}"]
    with pytest.raises(RunInterrupted):
        train(make_cfg([*base, *stop], run_dir=tmp_path / "run"))
    resumed = train(make_cfg(["resume=true"], run_dir=tmp_path / "run"))
    reference = train(make_cfg(base, run_dir=tmp_path / "reference"))
    assert resumed["resumes"] == 1 and resumed["task"] == "reconstruction"
    assert resumed["metrics"] == reference["metrics"] and resumed["history"] == reference["history"]


@pytest.mark.parametrize("data", ["shapes_seg", "image_folder"])
def test_the_autoencoder_learns_from_any_data_labels_ignored(make_cfg, tmp_path: Path, data: str) -> None:
    """Masks or folder labels ride along in the batch and are never read."""
    overrides = [f"data={data}", "model=autoencoder", "model.width=4", "diagnostics=off"]
    if data == "image_folder":
        for label in ("a", "b"):
            (tmp_path / "images" / label).mkdir(parents=True)
            for i in range(10):
                pixels = (torch.rand(20, 24, 3) * 255).byte().numpy()
                Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
        overrides += [f"data.root={tmp_path / 'images'}", "data.batch_size=4", "trainer.max_epochs=1",
                      "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]
    else:
        overrides += ["data.image_size=32", "+trainer.limit_train_batches=2"]
    cfg = make_cfg(overrides, tiny=data != "image_folder")  # conftest.TINY sets split sizes a folder does not have
    validate(cfg)
    record = train(cfg)
    assert record["status"] == "completed" and record["task"] == "reconstruction"
    assert math.isfinite(record["metrics"]["test/psnr"])
