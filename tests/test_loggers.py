"""Several loggers at once: one tiny run logs to TensorBoard, CSV and a local MLflow store, and each is read back with
its own reader (EventAccumulator, csv, ``mlflow.MlflowClient``): scalars, HParams/params with the tags, and the
diagnostics figures as images/artifacts identical to the PNGs in the run dir."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from experiments import build
from experiments.config import compose
from experiments.diagnostics.sinks import log_image
from experiments.errors import ConfigError
from experiments.run.tensorboard import tensorboard_tag
from experiments.train import train
from experiments.validation import validate

mlflow = pytest.importorskip("mlflow")  # the mlflow extra, part of dev

FIGURE = "diagnostics/gradient_flow"


def _hparams(events: EventAccumulator) -> dict[str, str]:
    """The HParams tab's values of a run, decoded from the hparams plugin's session-start summary."""
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            return {k: v.string_value or v.number_value for k, v in data.session_start_info.hparams.items()}
    raise AssertionError("no HParams session in the events")


def test_tensorboard_csv_and_mlflow_read_back(make_cfg, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = make_cfg(["logger=[tensorboard,csv,mlflow]", f"logger.mlflow.tracking_uri={store}",
                    f"logger.mlflow.artifact_location={tmp_path}/mlartifacts", "tags=[study,baseline]",
                    "data.train_size=64", "trainer.log_every_n_steps=1", "print_config=false"])
    record = train(cfg)
    run = Path(cfg.run_dir)
    assert record["tags"] == ["study", "baseline"]
    pngs = sorted((run / "figures" / FIGURE.replace("/", "__")).glob("step_*.png"))
    assert pngs  # the gradient-flow figure at initialisation and at the end

    events_dir = next((run / "tensorboard").rglob("events.out.tfevents.*")).parent  # the run's TensorBoard version
    events = EventAccumulator(str(events_dir), size_guidance={"scalars": 0, "images": 0}).Reload()
    assert events.Scalars("val/acc")[-1].value == pytest.approx(record["metrics"]["val/acc"])
    assert len(events.Images(tensorboard_tag(FIGURE))) == len(pngs)
    hparams = _hparams(events)
    assert hparams["tags"] == "study,baseline" and hparams["model"] == "cnn"

    with (run / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert float([r for r in rows if r.get("val/acc")][-1]["val/acc"]) == pytest.approx(record["metrics"]["val/acc"])
    assert any(r.get("lr-AdamW") for r in rows)  # the default callbacks' learning-rate monitor
    assert yaml.safe_load((run / "csv" / "hparams.yaml").read_text())["tags"] == "study,baseline"

    client = mlflow.MlflowClient(tracking_uri=store)
    (found,) = client.search_runs([client.get_experiment_by_name("experiments").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == str(run)
    assert found.data.params["tags"] == "study,baseline" and found.data.params["model"] == "cnn"
    assert {found.data.tags["study"], found.data.tags["baseline"]} == {"true"}
    assert found.data.metrics["final/test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    history = client.get_metric_history(found.info.run_id, "val/acc")
    assert history[-1].value == pytest.approx(record["metrics"]["val/acc"])
    artifacts = client.list_artifacts(found.info.run_id, f"figures/{FIGURE}")
    assert sorted(Path(a.path).name for a in artifacts) == [p.name for p in pngs]
    fetched = Path(client.download_artifacts(found.info.run_id, artifacts[-1].path, str(tmp_path)))
    assert np.array_equal(np.asarray(Image.open(fetched)), np.asarray(Image.open(pngs[-1])))


def test_mlflow_directory_store_takes_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "unset at teardown")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # build allows a directory store itself
    store = f"file:{tmp_path / 'mlruns'}"
    cfg = compose(["logger=[mlflow]", f"logger.mlflow.tracking_uri={store}", "tags=[dir]"])
    cfg.run_dir = str(tmp_path / "run")
    (logger,) = build.build_logger(cfg)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger], default_root_dir=str(tmp_path / "run"))
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    png = log_image(trainer, "samples/reconstruction", image, step=3)
    logger.finalize("success")
    client = mlflow.MlflowClient(tracking_uri=store)
    (artifact,) = client.list_artifacts(logger.run_id, "figures/samples/reconstruction")
    fetched = client.download_artifacts(logger.run_id, artifact.path, str(tmp_path))
    assert np.array_equal(np.asarray(Image.open(fetched)), image) and png is not None and png.is_file()
    assert client.get_run(logger.run_id).data.tags["dir"] == "true"


def test_mlflow_tracking_uri_from_the_environment_and_the_default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = compose(["logger=[mlflow]"])
    assert default.logger.mlflow.tracking_uri == f"sqlite:///{default.paths.output_dir}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert compose(["logger=[mlflow]"]).logger.mlflow.tracking_uri == "http://tracking.example:5000"


def test_logger_choices_compose_as_a_list() -> None:
    assert list(compose([]).logger) == ["tensorboard", "csv"]
    assert list(compose(["logger=csv"]).logger) == ["csv"]
    assert compose(["logger=[]"]).get("logger") is None
    with pytest.raises(ConfigError, match=r"^logger.mlflow.tracking_uri=None is invalid"):
        validate(compose(["logger=[mlflow]", "logger.mlflow.tracking_uri=null"]))
