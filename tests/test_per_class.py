"""Per-class results by name: a real run's confusion matrix and per-class accuracy, its figure, ``evaluate``'s
re-test and ``--predict`` columns without the data, segmentation's per-class IoU, and the sweep report's table."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from experiments import evaluate as ev
from experiments import report
from experiments.analysis.per_class import (
    classification_summary,
    fallback_names,
    recall_per_class,
    run_class_names,
)
from experiments.config import compose
from experiments.run.layout import RunDir
from experiments.run.tensorboard import tensorboard_tag
from experiments.tasks.classification import CONFUSION_TAG
from tests.conftest import TINY

TEST_SIZE = 48


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(run dir, metrics.json) of a 1-epoch shapes run with a 48-image test split."""
    from experiments.train import train

    cfg = compose([*TINY, "data.train_size=64", "data.val_size=32", f"data.test_size={TEST_SIZE}",
                   "data.batch_size=16", "diagnostics=off", "print_config=false"])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(tmp_path_factory.mktemp("per_class") / "run")
    train(cfg)
    record = json.loads((Path(cfg.run_dir) / "metrics.json").read_text())
    assert record["status"] == "completed", record.get("error")
    return Path(cfg.run_dir), record


def test_a_classification_run_records_its_test_split_by_class_name(shapes_run) -> None:
    run, record = shapes_run
    kinds = list(ev.load_run_config(run).data.kinds)
    assert record["class_names"] == kinds
    accuracy = record["per_class"]["test/acc"]
    assert list(accuracy) == kinds
    matrix = torch.tensor(record["confusion_matrix"])
    assert matrix.shape == (len(kinds), len(kinds)) and int(matrix.sum()) == TEST_SIZE
    assert record["test_count"] == TEST_SIZE  # what the report's Wilson interval of test/acc is taken from
    rows = matrix.sum(dim=1)
    for k, name in enumerate(kinds):  # per-class accuracy = recall = diagonal / row sum
        assert accuracy[name] == pytest.approx(float(matrix[k, k] / rows[k]))
    # the matrix agrees with torchmetrics' micro accuracy, logged independently from the same batches
    assert record["metrics"]["test/acc"] == pytest.approx(float(matrix.trace() / matrix.sum()), abs=1e-6)

    figure = run / "figures" / "confusion_matrix.png"
    with Image.open(figure) as png:
        assert png.format == "PNG" and min(png.size) > 200
    assert not (run / "figures" / "test__confusion_matrix").exists()  # one copy, under its fixed name

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(RunDir(run).tensorboard_events()), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images(tensorboard_tag(CONFUSION_TAG))) == 1


def test_evaluate_retests_by_class_and_draws_its_own_figure(shapes_run, capsys) -> None:
    run, record = shapes_run
    trained_figure = (run / "figures" / "confusion_matrix.png").read_bytes()
    assert ev.main([str(run)]) == 0
    saved = json.loads((run / "evaluation-best.json").read_text())
    # the same weights on the same test split: the same matrix, by the same names
    assert saved["confusion_matrix"] == record["confusion_matrix"]
    assert saved["class_names"] == record["class_names"] and saved["per_class"] == record["per_class"]
    figure = run / "figures" / "confusion_matrix-evaluation-best.png"
    assert figure.is_file() and f"confusion matrix: {figure}" in capsys.readouterr().out
    assert (run / "figures" / "confusion_matrix.png").read_bytes() == trained_figure  # the run's own is kept


def _digit_folder(root: Path, per_class: int = 12) -> Path:
    """Two class folders named like digits, ``3`` (dark squares) and ``7`` (light ones)."""
    gen = torch.Generator().manual_seed(0)
    for k, name in enumerate(("3", "7")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            level = 30 + 170 * k + int(torch.randint(0, 40, (1,), generator=gen))
            Image.new("RGB", (16, 16), (level, level, level)).save(root / name / f"{i}.png")
    return root


def test_predict_names_its_columns_by_the_class_folders_without_the_data(tmp_path: Path, make_cfg) -> None:
    from experiments.train import train

    data = _digit_folder(tmp_path / "digits")
    cfg = make_cfg(["data=image_folder", f"data.root={data}", "data.image_size=16", "data.batch_size=8",
                    "diagnostics=off", "logger=csv", "print_config=false", "trainer.max_epochs=1",
                    "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"], tiny=False)
    record = train(cfg)
    assert record["status"] == "completed", record.get("error")
    assert record["class_names"] == ["3", "7"] and set(record["per_class"]["test/acc"]) == {"3", "7"}
    assert (Path(cfg.run_dir) / "figures" / "confusion_matrix.png").is_file()  # also with the CSV logger only

    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(data / "7" / "0.png", new / "a.png")
    shutil.rmtree(data)  # predict reads the names from the run's record, not the folders
    assert ev.main([cfg.run_dir, "--predict", str(new), "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "predictions.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "prediction", "3", "7"] and rows[1][1] in ("3", "7")


def test_run_class_names_prefer_the_record_then_the_config() -> None:
    record = {"class_names": ["cat", "dog"]}
    assert run_class_names(record, {"kinds": ["circle", "square"]}, 2) == ["cat", "dog"]
    assert run_class_names({"class_names": ["a", "b", "c"]}, {"class_names": ["x", "y"]}, 2) == ["x", "y"]
    assert run_class_names(None, {"kinds": ["circle"], "task": "segmentation"}, 2) == ["background", "circle"]
    assert run_class_names({}, {"kinds": ["circle", "square"]}, 3) == fallback_names(3) == ["class_0", "class_1",
                                                                                          "class_2"]


def test_a_class_absent_from_the_test_split_has_no_accuracy() -> None:
    matrix = [[3, 1, 0], [0, 0, 0], [2, 0, 2]]
    assert recall_per_class(matrix) == [0.75, None, 0.5]
    summary = classification_summary(["a", "b", "c"], matrix)
    assert summary["per_class"] == {"test/acc": {"a": 0.75, "b": None, "c": 0.5}}
    assert summary["confusion_matrix"] == matrix and summary["class_names"] == ["a", "b", "c"]


def test_a_segmentation_run_records_each_classes_iou_by_name(make_cfg) -> None:
    from experiments.train import train

    cfg = make_cfg(["model=fcn", "data=shapes_seg", "data.train_size=32", "data.val_size=16", "data.test_size=16",
                    "data.batch_size=16", "diagnostics=off", "logger=csv", "print_config=false"])
    record = train(cfg)
    assert record["status"] == "completed", record.get("error")
    names = ["background", *cfg.data.kinds]
    assert record["class_names"] == names and list(record["per_class"]["test/iou"]) == names
    for name in names:  # the same numbers as the logged test/iou_<name> metrics
        assert record["per_class"]["test/iou"][name] == pytest.approx(record["metrics"][f"test/iou_{name}"])
    # the test count, and each test image's counts (the report's per-image bootstrap): summed, the same IoUs
    assert record["test_count"] == 16
    per_image = json.loads((Path(cfg.run_dir) / "test_per_image.json").read_text())
    assert len(per_image["intersection"]) == len(per_image["union"]) == 16 and per_image["class_names"] == names
    for k, name in enumerate(names):
        inter, union = (sum(image[k] for image in per_image[key]) for key in ("intersection", "union"))
        assert inter / union == pytest.approx(record["per_class"]["test/iou"][name], abs=1e-6)


def _fake_run(path: Path, activation: str, seed: int, accuracy: dict[str, float]) -> None:
    path.mkdir(parents=True)
    record = {
        "status": "completed", "task": "classification", "seed": seed,
        "overrides": [f"activation={activation}", f"seed={seed}"],
        "metrics": {"test/acc": sum(accuracy.values()) / len(accuracy)},
        "per_class": {"test/acc": accuracy}, "class_names": list(accuracy),
    }
    (path / "metrics.json").write_text(json.dumps(record))


def test_the_report_has_a_per_class_table_with_differences_from_the_baseline(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    _fake_run(sweep / "0", "relu", 0, {"circle": 0.9, "star": 0.8})
    _fake_run(sweep / "1", "relu", 1, {"circle": 0.7, "star": 0.6})
    _fake_run(sweep / "2", "sigmoid", 0, {"circle": 0.5, "star": 0.8})
    _fake_run(sweep / "3", "sigmoid", 1, {"circle": 0.31, "star": 0.7})
    assert report.main([str(sweep), "--no-plots"]) == 0
    printed = capsys.readouterr().out

    with (sweep / "report_per_class.csv").open() as handle:
        rows = {(r["class"], r["group"]): r for r in csv.DictReader(handle)}
    base, arm = rows[("circle", "activation=relu")], rows[("circle", "activation=sigmoid")]
    assert base["baseline"] == "true" and float(base["mean"]) == pytest.approx(0.8) and base["diff"] == ""
    assert float(arm["mean"]) == pytest.approx(0.405) and int(arm["n"]) == 2
    assert float(arm["diff"]) == pytest.approx(-0.395) and int(arm["diff_n"]) == 2  # per seed: -0.4, -0.39
    # t(0.975, 1) = 12.706 times s/sqrt(2) = 0.005: [-0.4585, -0.3315], the drop is resolved
    assert float(arm["diff_ci_low"]) == pytest.approx(-0.4585, abs=1e-4)
    assert float(arm["diff_ci_high"]) == pytest.approx(-0.3315, abs=1e-4)
    assert float(rows[("star", "activation=sigmoid")]["diff"]) == pytest.approx(0.05)

    markdown = (sweep / "report.md").read_text()
    assert "## Per class" in markdown and "| class | activation=relu (baseline) |" in markdown
    hurt = "`activation=sigmoid` vs `activation=relu`: largest test/acc drops: circle (-0.3950 *)."
    assert hurt in markdown and hurt in printed
    assert "report_per_class.csv" in printed
