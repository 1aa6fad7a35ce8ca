"""The config tree printed when a run starts (``print_config``), Hydra's ``--info``, and the checks of ``tags`` and
``print_config``."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from experiments import train as train_module
from experiments.config import compose
from experiments.config_tree import print_config_tree
from experiments.errors import ConfigError
from experiments.train import train
from experiments.validation import validate
from tests.conftest import run_cli


def _printed(overrides: list[str]) -> str:
    cfg = compose(overrides)
    cfg.run_dir = "/tmp/run"
    console = Console(record=True, width=160, file=io.StringIO())
    print_config_tree(cfg, console)
    return console.export_text()


def test_every_group_is_a_branch_labelled_with_its_option() -> None:
    text = _printed(["model=resnet", "callbacks=[default,ema]"])
    assert "model: resnet" in text and "depth: 20" in text  # expanded
    assert re.search(r"callbacks: model_checkpoint, lr_monitor, .*ema\n", text)  # a list group: its entries
    assert "logger: tensorboard, csv" in text and "seed: 0" in text


def test_only_the_listed_groups_expand() -> None:
    text = _printed(["print_config=[optimizer]"])
    assert "optimizer: adamw" in text and "weight_decay:" in text
    assert "model: cnn" in text and "stages:" not in text  # collapsed to one line
    assert _printed(["print_config=false"]) == ""


def test_a_run_prints_it_once_and_a_sweep_job_does_not(make_cfg, capsys, monkeypatch) -> None:
    train(make_cfg(["debug=fdr", "diagnostics=off", "logger=[]", "print_config=full"]))
    out = capsys.readouterr().out
    assert out.count("├── callbacks: default") == 1 and "fast_dev_run: 1" in out  # debug=fdr's setting
    monkeypatch.setattr(train_module, "_multirun_job", lambda: "3")
    train(make_cfg(["debug=fdr", "diagnostics=off", "logger=[]", "print_config=full"],
                   run_dir=make_cfg().run_dir + "-job"))
    assert "├── callbacks" not in capsys.readouterr().out


def test_hydra_info_works() -> None:
    result = run_cli("experiments.train", "--info", "defaults", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "callbacks/model_checkpoint" in result.stdout and "paths/default" in result.stdout


@pytest.mark.parametrize(("overrides", "message"), [
    (["print_config=[modle]"],
     r"^print_config=\[modle\] is invalid: it is compact, full \(or true\), false, or a list of the groups"),
    (["tags=[a,'']"], r"^tags=\[a,\] is invalid: tags are a list of names"),
])
def test_bad_tags_and_print_config_are_one_sentence(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose(overrides))
