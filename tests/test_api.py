"""The Python API (``from experiments import run, load``) against the command line it stands in for: the same
composed config, the same one-sentence errors, a real run whose result matches what it wrote, two runs in one
process with nothing of Hydra left behind, and a loaded model that reproduces the run's test accuracy. The notebook
under docs/ is executed too (slow)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments.config import compose
from experiments.errors import ConfigError
from tests.conftest import REPO, run_cli

NOTEBOOK = REPO / "docs" / "notebooks" / "two_arm_study.ipynb"
#: a few seconds of training; diagnostics off as they add nothing here
TINY = ["data.train_size=128", "data.val_size=64", "data.test_size=64", "data.batch_size=32",
        "trainer.accelerator=cpu", "diagnostics=off", "logger=csv"]


def hydra_initialised() -> bool:
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().is_initialized()


@pytest.fixture(scope="module")
def trained():
    """One tiny real run through the API (two epochs), shared by the tests that read it."""
    from experiments import run

    return run(TINY, **{"trainer.max_epochs": 2})


def test_keywords_and_a_list_compose_the_config_the_cli_composes() -> None:
    from experiments import configure

    made = configure(["model=fcn"], activation="leaky_relu", **{"optimizer.lr": 0.01, "tags": ["a", "b c"]})
    expected = compose(["model=fcn", "activation=leaky_relu", "optimizer.lr=0.01", "tags=[a,'b c']"])
    run_dir = Path(made.run_dir)
    OmegaConf.set_struct(expected, False)
    expected.run_dir = str(run_dir)  # ${hydra:runtime.output_dir} under the CLI: the dir Hydra creates
    made, expected = (OmegaConf.to_container(c, resolve=True) for c in (made, expected))
    assert made == expected
    assert made["activation"]["name"] == "leaky_relu" and made["optimizer"]["lr"] == 0.01
    assert made["tags"] == ["a", "b c"]
    # where the CLI puts it: $EXPERIMENTS_OUTPUT_DIR/runs/<date>/<time> (conftest points it at a temp dir)
    outputs = Path(os.environ["EXPERIMENTS_OUTPUT_DIR"]).absolute()
    assert run_dir.parent == outputs / "runs" / f"{datetime.now():%Y-%m-%d}"
    assert not run_dir.exists()
    assert not hydra_initialised()


def test_a_typed_run_dir_wins_as_on_the_command_line(tmp_path: Path) -> None:
    from experiments import configure

    cfg = configure([f"hydra.run.dir={tmp_path}/mine"], seed=3)
    assert cfg.run_dir == str(tmp_path / "mine") and cfg.seed == 3
    assert list(cfg.hydra.overrides.task) == ["seed=3"]  # launch keys are not the run's overrides, as in the CLI


@pytest.mark.parametrize("bad", ["activation=sigmod", "optimizer.lr=-1"])
def test_a_bad_override_raises_the_sentence_the_cli_prints(bad: str) -> None:
    """A composition error (Hydra's) and a validation error (the project's): the exception's text is the CLI's line
    after ``error:``, and a later call still works."""
    from experiments import configure, run

    cli = run_cli("experiments.train", bad, "trainer.accelerator=cpu", timeout=120)
    assert cli.returncode == 2
    line = cli.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    with pytest.raises(ConfigError) as raised:
        run([bad, "trainer.accelerator=cpu"])
    assert str(raised.value) == line.removeprefix("error: ")
    assert not hydra_initialised()
    assert configure(["activation=sigmoid"]).activation.name == "sigmoid"  # nothing left behind that breaks it


def test_a_tiny_run_returns_the_metrics_and_history_it_wrote(trained) -> None:
    record = json.loads((trained.run_dir / "metrics.json").read_text())
    assert trained.status == record["status"] == "completed"
    assert trained.metrics == record["metrics"] and 0.0 <= trained.metrics["test/acc"] <= 1.0
    history = trained.history
    assert list(history["epoch"]) == [0, 1]  # one row per epoch
    for column, values in record["history"].items():
        assert history[column].tolist() == pytest.approx([float("nan") if v is None else v for v in values],
                                                         nan_ok=True)
    assert history["step"].tolist() == [4, 8]  # 128 images in batches of 32: the epochs really ran
    assert trained.run_dir.parent.parent == Path(os.environ["EXPERIMENTS_OUTPUT_DIR"]).absolute() / "runs"
    # as the CLI leaves it: Hydra's record, the run's own config, its log
    assert OmegaConf.load(trained.run_dir / ".hydra" / "overrides.yaml") == [*TINY, "trainer.max_epochs=2"]
    assert OmegaConf.load(trained.run_dir / "config.yaml").trainer.max_epochs == 2
    assert (trained.run_dir / "train.log").is_file()


def test_two_runs_in_one_process_leave_no_hydra_state_and_no_handlers(trained) -> None:
    from experiments import run

    sigint, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    handlers = list(logging.getLogger().handlers)
    second = run(TINY, seed=1, **{"trainer.max_epochs": 1})
    assert second.status == "completed" and second.run_dir != trained.run_dir
    assert len(second.history) == 1 and second.config.seed == 1
    assert not hydra_initialised()
    assert signal.getsignal(signal.SIGINT) is sigint and signal.getsignal(signal.SIGTERM) is sigterm
    assert logging.getLogger().handlers == handlers


def test_load_gives_the_model_that_reproduces_the_test_accuracy(trained) -> None:
    from experiments import build, load

    loaded = load(trained.run_dir)
    assert not loaded.model.training and loaded.checkpoint.name == "best.ckpt"
    assert loaded.config.trainer.max_epochs == 2 and loaded.metrics == trained.metrics
    assert loaded.history.equals(trained.history)
    datamodule = build.build_datamodule(loaded.config)
    datamodule.setup("test")
    right = seen = 0
    with torch.no_grad():
        for images, labels in datamodule.test_dataloader():
            right += int((loaded.model(images).argmax(dim=1) == labels).sum())
            seen += len(labels)
    assert right / seen == pytest.approx(trained.metrics["test/acc"], abs=1e-6)
    with pytest.raises(ConfigError, match="RUN_DIR="):
        load(trained.run_dir / "no-such-run")


def test_the_package_stays_light_and_run_is_the_api_and_the_subpackage() -> None:
    """``import experiments`` (every command's ``--help``) pulls in no torch; ``from experiments import run`` is the
    API's function whatever was imported first, while ``experiments.run.<module>`` still reaches the subpackage."""
    code = (
        "import sys, inspect\nimport experiments\n"
        "light = not any(m.split('.')[0] in ('torch', 'lightning') for m in sys.modules)\n"
        "import experiments.run.layout as layout\nfrom experiments.run import record\n"
        "from experiments import run, load\nimport experiments.api as api\n"
        "from hydra.utils import get_class\n"
        "print(light, inspect.signature(run) == inspect.signature(api.run), load is api.load,\n"
        "      experiments.run.layout is layout, get_class('experiments.run.layout.RunDir') is layout.RunDir)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 5


def test_the_notebook_is_kept_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


@pytest.mark.slow
def test_the_notebook_executes_a_two_arm_study(tmp_path: Path) -> None:
    """The notebook end to end in a fresh kernel, its parameters cell replaced by a smaller budget: a table of four
    runs and a plot come out, and no cell fails."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = (
        'ARMS = {"sigmoid": ["activation=sigmoid"], "relu": ["activation=relu"]}\nSEEDS = [0, 1]\n'
        f"BUDGET = {[*TINY, 'trainer.max_epochs=2']!r}\n"
    )
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    tables = [o.data["text/html"] for o in outputs if o.output_type == "execute_result" and "text/html" in o.data]
    assert "sigmoid" in tables[0] and "relu" in tables[0] and tables[0].count("</tr>") >= 5  # header + 4 runs
    assert any("image/png" in o.get("data", {}) for o in outputs)
