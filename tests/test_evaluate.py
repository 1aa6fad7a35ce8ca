"""``python -m experiments.evaluate``: re-testing reproduces the test metrics; predictions read back as written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from experiments import evaluate as ev
from experiments.data.shapes import render_shapes
from experiments.run.predict import mask_image, write_masks
from experiments.tasks.segmentation import palette

pytest_plugins = ["tests.trained_run"]


def test_evaluate_best_reproduces_the_runs_test_metrics(trained_run, capsys) -> None:
    run, record = trained_run
    assert ev.main([str(run)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((run / "evaluation-best.json").read_text())
    assert saved["checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    for key in ("test/acc", "test/loss"):  # same weights, same test split -> the same numbers
        assert saved["metrics"][key] == pytest.approx(record["metrics"][key], abs=1e-6)
        assert f"{key}={saved['metrics'][key]:.4f}" in printed


def test_evaluate_last_and_an_explicit_path(trained_run) -> None:
    run, _ = trained_run
    last = ev.evaluate(run, ckpt="last")
    assert (run / "evaluation-last.json").is_file() and last["checkpoint"].endswith("last.ckpt")
    explicit = ev.evaluate(run, ckpt=str(run / "checkpoints" / "last.ckpt"))
    assert explicit["metrics"] == last["metrics"]


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["{run}", "ckpt=nope.ckpt"], "ckpt=nope.ckpt is invalid: no such file"),
        (["{run}", "checkpoint=last"], "checkpoint=last is invalid"),
        (["{tmp}"], "holds no config.yaml"),
        (["{run}", "--predict", "{tmp}"], "holds no PNG"),
    ],
    ids=["missing-ckpt", "unknown-option", "not-a-run-dir", "empty-folder"],
)
def test_bad_input_is_one_line_and_exit_2(trained_run, tmp_path: Path, capsys, args: list[str], phrase: str) -> None:
    run, _ = trained_run
    argv = [a.format(run=run, tmp=tmp_path) for a in args]
    assert ev.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and phrase in err and "\n" not in err


def _write_pngs(folder: Path, images: torch.Tensor, size: int | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        pixels = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
        png = Image.frombytes("RGB", (pixels.shape[1], pixels.shape[0]), pixels.numpy().tobytes())
        if size is not None:
            png = png.resize((size, size), Image.Resampling.BILINEAR)
        paths.append(folder / f"img{i:02d}.png")
        png.save(paths[-1])
    return paths


def test_predict_writes_probabilities_that_match_the_network(trained_run, tmp_path: Path) -> None:
    run, record = trained_run
    kinds = list(ev.load_run_config(run).data.kinds)
    sample = render_shapes(6, 32, 3, seed=123, kinds=kinds)
    _write_pngs(tmp_path / "images", sample.images)
    _write_pngs(tmp_path / "big", sample.images[:1], size=64)[0].rename(tmp_path / "images" / "zbig.png")
    table = ev.predict(run, tmp_path / "images", tmp_path / "out")
    rows = list(csv.DictReader(table.open()))
    assert [r["file"] for r in rows] == [f"img{i:02d}.png" for i in range(6)] + ["zbig.png"]
    classes = list(rows[0])[2:]
    assert classes == kinds
    probs = torch.tensor([[float(r[c]) for c in classes] for r in rows])
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(rows)), atol=1e-4)
    assert all(r["prediction"] == classes[int(p.argmax())] for r, p in zip(rows, probs, strict=True))

    # the same pixels through the network by hand: 8-bit quantised, standardised with the recorded stats
    stats = record["data_stats"]
    x = (sample.images * 255).round().clamp(0, 255) / 255
    x = (x - torch.tensor(stats["mean"]).view(1, 3, 1, 1)) / torch.tensor(stats["std"]).view(1, 3, 1, 1)
    task = ev._task_with_weights(ev.load_run_config(run), run / "checkpoints" / "best.ckpt").eval()
    with torch.no_grad():
        expected = task(x).softmax(dim=1)
    assert torch.allclose(probs[:6], expected, atol=1e-5)


def test_segmentation_masks_are_palette_pngs_at_the_input_size(tmp_path: Path) -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[0, 2:6, 2:6] = 1
    masks[1, :, 4:] = 3
    files = [tmp_path / "a.png", tmp_path / "b.jpg"]
    table = write_masks(tmp_path / "out", files, masks, [(8, 8), (16, 16)], ["background", "circle", "square", "ring"])
    first = Image.open(tmp_path / "out" / "a_mask.png")
    assert first.mode == "P" and first.size == (8, 8)
    assert torch.equal(torch.tensor(list(first.getdata())).view(8, 8), masks[0])
    assert first.convert("RGB").getpixel((3, 3)) == tuple(palette(2)[1].tolist())
    second = Image.open(tmp_path / "out" / "b_mask.png")
    assert second.size == (16, 16) and second.getpixel((15, 0)) == 3 and second.getpixel((0, 0)) == 0
    rows = list(csv.DictReader(table.open()))
    assert float(rows[0]["circle"]) == pytest.approx(16 / 64) and float(rows[1]["ring"]) == pytest.approx(0.5)
    assert mask_image(masks[0]).getpixel((0, 0)) == 0


def test_checkpoint_names_resolve_in_the_run_dir_and_best_falls_back_to_the_recorded_result(tmp_path: Path) -> None:
    """save_top_k > 1 keeps no best.ckpt and ema/swa runs test averaged.ckpt: ``best`` is what the run recorded."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert ev.resolve_checkpoint(run, "last") == run / "checkpoints" / "last.ckpt"
    assert ev.resolve_checkpoint(run, "averaged") == run / "checkpoints" / "averaged.ckpt"
    assert ev.resolve_checkpoint(run, str(tmp_path / "x.ckpt")) == tmp_path / "x.ckpt"
    recorded = run / "checkpoints" / "best-epoch003.ckpt"
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "best_checkpoint": str(recorded)}))
    assert ev.resolve_checkpoint(run, "best") == recorded
    (run / "checkpoints" / "best.ckpt").write_bytes(b"")
    assert ev.resolve_checkpoint(run, "best") == run / "checkpoints" / "best.ckpt"
