"""The loss landscape of real runs: the end-of-run diagnostic, ``python -m experiments.landscape``, and the sharpness
tracked during training. The numbers themselves are checked against closed forms in tests/analysis/test_landscape.py;
here: every output is written and read back, the anchors agree with the run's own loss, and it is reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments.analysis import landscape as ls
from experiments.diagnostics import landscape as lsd
from experiments.run.layout import RunDir
from experiments.train import train

pytest_plugins = ["tests.trained_run"]

#: a landscape small enough for a test: few images, a 3×3 grid, a short Lanczos
SMALL = {"images": 48, "batch_size": 32, "grid": 3, "slice_points": 5, "interpolation_points": 3, "span": 1.0,
         "radius": 0.5, "eigenvalues": 2, "lanczos_iters": 6, "trace_samples": 3, "curvature_images": 48, "seed": 0}
CLI_SMALL = ["--images", "48", "--batch-size", "32", "--grid", "3", "--slice-points", "5", "--interpolation-points",
             "3", "--eigenvalues", "2", "--lanczos-iters", "6", "--trace-samples", "3", "--curvature-images", "48",
             "--no-progress"]


def _task_at(run_dir: Path, checkpoint: Path):
    from experiments.evaluate import _task_with_weights, load_run_config

    return _task_with_weights(load_run_config(run_dir), checkpoint).eval()


def _train_images(run_dir: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    from experiments import build
    from experiments.evaluate import load_run_config

    datamodule = build.build_datamodule(load_run_config(run_dir))
    datamodule.setup("fit")
    images, labels = lsd.split_tensors(datamodule, "train")
    return images[:count], labels[:count]


@torch.no_grad()
def _loss(task, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float(task.loss_fn(task.network(images), labels))


def test_the_diagnostic_writes_landscape_figures_tensorboard_and_metrics(make_cfg) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(["diagnostics=off", "data.image_size=16", "model.width=8", "trainer.max_epochs=2"])
    cfg.diagnostics = OmegaConf.create({"landscape": {"_target_": "experiments.diagnostics.landscape.LossLandscape",
                                                      **SMALL}})
    record = train(cfg)
    run = RunDir(cfg.run_dir)
    assert record["status"] == "completed" and run.init_checkpoint.is_file()
    saved = json.loads(run.landscape.read_text())
    assert saved["images"] == 48 and saved["batch_norm"] == lsd.BN_NOTE
    # the numbers in metrics.json are the saved ones, named by the split
    curvature = saved["curvature"]
    assert record["metrics"]["train/top_eig"] == pytest.approx(curvature["top_eig"])
    assert record["metrics"]["train/hessian_trace"] == pytest.approx(curvature["trace"])
    assert record["metrics"]["train/eig_ratio"] == pytest.approx(abs(curvature["min_eig"] / curvature["top_eig"]))
    assert json.loads(run.metrics.read_text())["metrics"]["train/loss_rise"] == pytest.approx(saved["loss_rise"])
    assert curvature["top_eigenvalues"][0] >= curvature["top_eigenvalues"][1] >= curvature["min_eig"]
    # anchors: the slice at 0 and the interpolation's ends are the run's own eval-mode loss at its tested and
    # initial weights, computed here without the landscape code
    images, labels = _train_images(run.root, 48)
    tested = _task_at(run.root, Path(record["best_checkpoint"]))
    start = _task_at(run.root, run.init_checkpoint)
    own = _loss(tested, images, labels)
    assert saved["loss"] == pytest.approx(own, rel=1e-5)
    assert saved["slices"]["directions"][0]["loss"][2] == pytest.approx(own, rel=1e-5)  # coords -1, -.5, 0, .5, 1
    assert saved["surface"]["loss"][1][1] == pytest.approx(own, rel=1e-5)
    alphas = saved["interpolation"]["alpha"]
    assert alphas == [-0.5, 0.5, 1.5]
    # α = 0.5 is the midpoint of the initial and tested weights
    mid = {k: (a + b) / 2 for (k, a), b in zip(ls.trainable(start.network).items(),
                                                 ls.trainable(tested.network).values(), strict=True)}
    mid_loss, _ = ls.evaluate(tested.network, mid, [(images, labels)], tested.loss_fn)
    assert saved["interpolation"]["train"]["loss"][1] == pytest.approx(mid_loss, rel=1e-5)
    # figures in the run dir and in TensorBoard, read back
    for tag in lsd.FIGURES:
        assert list((run.root / "figures").glob(f"{tag.replace('/', '__')}/step_*.png")), tag
    events = EventAccumulator(str(next((run.root / "tensorboard").iterdir())), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "~curvature/top_eig" in tags["scalars"] and "~landscape/contour" in tags["images"]
    assert events.Scalars("~curvature/top_eig")[-1].value == pytest.approx(curvature["top_eig"], rel=1e-5)


def test_the_command_is_reproducible_from_its_seed_and_records_the_tested_checkpoint(trained_run, capsys) -> None:
    from experiments.landscape import main

    run_dir, _ = trained_run
    run = RunDir(run_dir)
    assert main([str(run_dir), *CLI_SMALL]) == 0
    out = capsys.readouterr().out
    first = json.loads(run.landscape.read_text())
    assert "(and metrics.json)" in out and "top eigenvalues" in out
    assert json.loads(run.metrics.read_text())["metrics"]["train/top_eig"] == pytest.approx(
        first["curvature"]["top_eig"])
    assert main([str(run_dir), *CLI_SMALL]) == 0
    again = json.loads(run.landscape.read_text())
    assert again["curvature"] == first["curvature"] and again["slices"] == first["slices"]
    capsys.readouterr()
    assert main([str(run_dir), *CLI_SMALL, "--seed", "1", "ckpt=last"]) == 0
    other = json.loads(run.landscape.read_text())
    assert other["slices"]["directions"][0]["loss"] != first["slices"]["directions"][0]["loss"]
    assert "(and metrics.json)" not in capsys.readouterr().out  # not the tested checkpoint: metrics.json unchanged
    assert json.loads(run.metrics.read_text())["metrics"]["train/top_eig"] == pytest.approx(
        first["curvature"]["top_eig"])


@pytest.mark.parametrize(("args", "named"), [
    (["--split", "test"], "--split=test"),
    (["--grid", "2.5"], "--grid=2.5"),
    (["--radius", "2"], "--radius=2.0"),
    (["ckpt=", "--where", "x=1"], "ckpt="),
])
def test_bad_options_are_one_sentence_and_exit_2(trained_run, capsys, args: list[str], named: str) -> None:
    from experiments.landscape import main

    run_dir, _ = trained_run
    assert main([str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {named}") and "\n" not in err and "Traceback" not in err


def test_a_missing_run_dir_is_one_sentence(tmp_path: Path, capsys) -> None:
    from experiments.landscape import main

    assert main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: RUN_DIR=")


def test_sharpness_is_the_top_hessian_eigenvalue_during_full_batch_descent(make_cfg) -> None:
    cfg = make_cfg(["experiment=edge_of_stability", "data.train_size=64", "data.val_size=32", "data.test_size=32",
                    "data.image_size=16", "model.width=4", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
                    "diagnostics.sharpness.every_n_steps=1", "diagnostics.sharpness.lanczos_iters=8",
                    "optimizer.lr=0.05"], tiny=False)  # not TINY: its batch size would replace the full batch
    assert cfg.data.batch_size == 64 and cfg.optimizer.momentum == 0 and cfg.optimizer.weight_decay == 0
    record = train(cfg)
    sharpness = record["sharpness"]
    assert sharpness["step"] == [0, 1, 2] and sharpness["lr"] == [0.05] * 3
    # at step 0 the weights are init.ckpt's: an independent, longer Lanczos on the same loss agrees
    run = RunDir(cfg.run_dir)
    start = _task_at(run.root, run.init_checkpoint)
    images, labels = _train_images(run.root, 64)
    params = ls.trainable(start.network)
    hvp = ls.hvp_operator(start.network, params, [(images, labels)], start.loss_fn)
    exact = ls.top_eigenvalues(hvp, params, k=1, iters=40, generator=torch.Generator().manual_seed(3))[0]
    assert sharpness["top_eig"][0] == pytest.approx(exact, rel=0.02)


def test_a_sweep_dir_stands_for_its_completed_runs_and_where_picks_among_them(tmp_path: Path) -> None:
    from experiments.errors import ConfigError
    from experiments.landscape import parse_targets

    sweep = tmp_path / "sweep"
    for job, (status, depth) in enumerate([("completed", 20), ("completed", 32), ("failed", 32)]):
        run = sweep / str(job)
        (run / "pretrain").mkdir(parents=True)
        record = {"status": status, "overrides": [f"model.depth={depth}", "seed=0"]}
        (run / "metrics.json").write_text(json.dumps(record))
        (run / "pretrain" / "metrics.json").write_text(json.dumps(record))  # a nested pre-training run: not listed
    assert parse_targets([str(sweep)]) == ([sweep / "0", sweep / "1"], "best")
    assert parse_targets([str(sweep), "ckpt=last"], ["model.depth=32"]) == ([sweep / "1"], "last")
    with pytest.raises(ConfigError, match="with model.depth=56"):
        parse_targets([str(sweep)], ["model.depth=56"])
