"""What a first run prints: a dozen lines of what was chosen (``print_config=compact``, the default), no Lightning
advert, no ``v_num`` on the progress bar (config_tree.py, run/console.py)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from rich.console import Console

from experiments.config import compose
from experiments.config_tree import compact_lines, print_run_config
from tests.conftest import run_cli

#: a few seconds of training, with one group and one key changed
CHANGED = ["trainer.max_epochs=1", "data.train_size=64", "data.val_size=32", "data.test_size=32",
           "data.batch_size=32", "norm=group", "optimizer.lr=0.002"]


def test_a_first_run_shows_what_was_chosen_in_a_few_lines_without_lightnings_noise(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_cli("experiments.train", *CHANGED, "trainer.accelerator=cpu", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    lines = out.splitlines()
    started = next(i for i, line in enumerate(lines) if line.startswith("Epoch ") or "Trainer.fit` stopped" in line)
    assert started <= 20, "\n".join(lines[:started])  # everything before training, the config included
    assert re.search(r"^  model\s+cnn$", out, re.M) and re.search(r"^  scheduler\s+onecycle$", out, re.M)
    assert re.search(r"^  norm\s+group  \(default batch\)$", out, re.M)  # a group changed: shown with its default
    assert re.search(r"^  overrides\s+trainer\.max_epochs=1 .*optimizer\.lr=0\.002  trainer\.accelerator=cpu$", out,
                     re.M)
    assert re.search(rf"^  run dir\s+{re.escape(str(run))}$", out, re.M)
    assert "_target_" not in out and "weight_decay" not in out  # not the full tree
    assert "litlogger" not in out and "Tip:" not in out
    assert "val/acc=" in out and "v_num" not in out  # tqdm's bar (the default) was drawn, without the logger version
    # and the run it trained: its dir printed last, its record and Hydra's files written
    assert f"run dir: {run}" in result.stdout
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["status"] == "completed"
    assert saved["choices"]["model"] == "cnn" and saved["choices"]["norm"] == "group"
    assert "trainer.max_epochs=1" in saved["overrides"] and "optimizer.lr=0.002" in saved["overrides"]
    assert (run / ".hydra" / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()


def _shown(overrides: list[str], **kwargs) -> str:
    cfg = compose(overrides)
    cfg.run_dir = "/tmp/run"
    console = Console(record=True, width=200, file=io.StringIO())
    print_run_config(cfg, console=console, **kwargs)
    return console.export_text()


def test_compact_full_and_false() -> None:
    compact = _shown(["model=resnet", "logger=csv", "seed=3"])
    assert re.search(r"model\s+resnet  \(default cnn\)", compact)
    assert re.search(r"pooling\s+stride  \(set by model=resnet, default max\)", compact)  # the model's choice, said
    assert re.search(r"logger\s+csv  \(default \[tensorboard, csv\]\)", compact)
    assert re.search(r"overrides\s+seed=3$", compact, re.M) and len(compact.splitlines()) <= 12
    full = _shown(["model=resnet", "print_config=full"])
    assert "model: resnet" in full and "depth: 20" in full and len(full.splitlines()) > 60
    tree = _shown(["print_config=true"])  # true: the tree, as before compact became the default
    assert "optimizer: adamw" in tree and "weight_decay:" in tree
    assert _shown(["print_config=false"]) == ""


def test_a_resumed_run_shows_its_own_choices_and_where_it_starts() -> None:
    cfg = compose(["ckpt_path=/tmp/x/last.ckpt", "trainer.max_epochs=4"])
    cfg.run_dir = "/tmp/branch"
    text = "\n".join(compact_lines(cfg, choices={"model": "fcn", "data": "shapes"}, overrides=["model=fcn"]))
    assert re.search(r"model\s+fcn  \(default cnn\)", text) and "optimizer" not in text
    assert re.search(r"starts from\s+/tmp/x/last\.ckpt", text) and "overrides" not in text


def test_a_default_that_a_choice_changes_is_shown_with_the_choice_that_set_it() -> None:
    """model=fcn picks upsampling=transposed and data=shapes_seg, model=autoencoder loss=pixel_mse, scale=paper the
    trainer: each shown with who set it; an option typed on the command line is the user's own."""
    fcn = "\n".join(compact_lines(compose(["model=fcn"])))
    assert re.search(r"^  upsampling\s+transposed  \(set by model=fcn, default bilinear\)$", fcn, re.M)
    assert re.search(r"^  data\s+shapes_seg  \(set by model=fcn, default shapes\)$", fcn, re.M)
    typed = "\n".join(compact_lines(compose(["model=fcn", "upsampling=transposed"])))
    assert re.search(r"^  upsampling\s+transposed  \(default bilinear\)$", typed, re.M)
    autoencoder = "\n".join(compact_lines(compose(["model=autoencoder"])))
    assert re.search(r"^  loss\s+pixel_mse  \(set by model=autoencoder, default cross_entropy\)$", autoencoder, re.M)
    paper = "\n".join(compact_lines(compose(["experiment=plain_vs_residual", "scale=paper"])))
    assert re.search(r"^  trainer\s+gpu  \(set by scale=paper, default default\)$", paper, re.M)
    assert re.search(r"^  model\s+resnet  \(set by experiment=plain_vs_residual, default cnn\)$", paper, re.M)


def test_every_model_default_of_another_group_is_in_the_readme_group_table() -> None:
    """What a model option picks in another group (its defaults list) is said in the README's group table too."""
    from experiments.config import conf_dir, option_overrides

    readme = (conf_dir().parent / "README.md").read_text()
    table = readme.split("## Config groups", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines() if line.startswith("| `")}
    picked = {(model.stem, group, option) for model in sorted((conf_dir() / "model").glob("*.yaml"))
              for group, option in option_overrides("model", model.stem).items()}
    assert ("fcn", "upsampling", "transposed") in picked and ("autoencoder", "loss", "pixel_mse") in picked
    for model, group, option in picked:
        assert f"`model={model}` picks `{option}`" in rows[group], (model, group, option)


def test_the_default_progress_bar_is_tqdm_and_rich_progress_bar_gives_rich() -> None:
    from lightning.pytorch.callbacks import RichProgressBar

    from experiments.run.console import RichBar, TqdmBar, without_version

    assert [type(c) for c in without_version([], True)] == [TqdmBar]  # Lightning alone would pick Rich here
    assert without_version([], False) == []
    rich = RichProgressBar()
    assert without_version([rich], True) == [rich] and type(rich) is RichBar  # callbacks=[default,rich_progress_bar]


def test_the_log_interval_is_capped_by_the_epochs_batches_said_once(capsys) -> None:
    from types import SimpleNamespace

    from experiments.run.console import LogIntervalCap

    def trainer(**changes):
        fields = {"log_every_n_steps": 10, "num_training_batches": 4, "loggers": [object()], "fast_dev_run": False,
                  "is_global_zero": True}
        return SimpleNamespace(**{**fields, **changes})

    short = trainer()
    LogIntervalCap().on_train_start(short, None)
    assert short.log_every_n_steps == 4
    assert capsys.readouterr().err == ("note: trainer.log_every_n_steps=10 is more than the 4 training batches of an "
                                       "epoch: step values (learning rate, loss) are logged every 4 steps\n")
    for unchanged in (trainer(num_training_batches=10), trainer(loggers=[]), trainer(num_training_batches=float("inf")),
                      trainer(fast_dev_run=True), trainer(num_training_batches=0)):
        LogIntervalCap().on_train_start(unchanged, None)
        assert unchanged.log_every_n_steps == 10
    assert capsys.readouterr().err == ""


def test_a_run_shorter_than_the_log_interval_still_logs_its_learning_rate(tmp_path: Path) -> None:
    """Lightning reads the capped interval: 3 batches an epoch, log_every_n_steps=10, and the learning rate is logged
    (a bare Lightning fit of a linear layer, a second)."""
    import csv
    import warnings

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    from experiments.run.console import LogIntervalCap

    class Line(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(12, 2), torch.randn(12, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = L.Trainer(max_epochs=2, log_every_n_steps=10, logger=CSVLogger(tmp_path, name="", version=""),
                            callbacks=[LearningRateMonitor("step"), LogIntervalCap()], enable_progress_bar=False,
                            enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(Line(), loader)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r.get("lr-SGD")] == [2, 5]  # every 3rd step: each epoch's last batch
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [2, 5]
    assert not any("smaller than the logging interval" in str(w.message) for w in caught)  # said once, by us
