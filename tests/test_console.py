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
    assert "val/acc:" in out and "v_num" not in out  # the progress bar was drawn, without the logger version
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
    assert re.search(r"pooling\s+stride  \(default max\)", compact)  # chosen by the model: differs, so shown
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
