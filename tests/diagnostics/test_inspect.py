"""Layer summary and the inspect command: receptive fields, parameter and FLOP totals, the gradient probe."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import matplotlib.image
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from experiments.analysis.receptive_field import effective_receptive_field, receptive_field
from experiments.analysis.summary import summarize
from experiments.analysis.trunk import spatial_trunk
from experiments.build import build_network
from experiments.inspect import main
from experiments.run.checkpoints import load_network_weights
from tests.conftest import run_cli


def context_module(channels: int = 2) -> nn.Sequential:
    """Yu & Koltun (2016), basic context module: 3x3 convs with dilations 1,1,2,4,8,16,1, then a 1x1 conv."""
    layers: list[nn.Module] = []
    for d in (1, 1, 2, 4, 8, 16, 1):
        layers += [nn.Conv2d(channels, channels, 3, padding=d, dilation=d), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(channels, channels, 1))


def test_context_module_receptive_fields_follow_yu_and_koltun() -> None:
    summary = summarize(context_module(), (1, 2, 96, 96))
    convs = [r for r in summary.rows if r.type == "Conv2d"]
    assert [r.rf for r in convs] == [3, 5, 9, 17, 33, 65, 67, 67]
    assert [r.dilation for r in convs] == [1, 1, 2, 4, 8, 16, 1, 1]
    assert all(r.stride == 1 for r in convs) and summary.rf == 67


@pytest.mark.parametrize("overrides", [[], ["model=resnet", "model.depth=8"]], ids=["cnn", "resnet8"])
def test_parameter_and_flop_totals_match_numel_and_the_flop_counter(make_cfg, overrides) -> None:
    network = build_network(make_cfg(overrides))
    summary = summarize(network, (1, 3, 32, 32))
    assert summary.total_params == sum(p.numel() for p in network.parameters()) == sum(r.params for r in summary.rows)
    counter = FlopCounterMode(display=False)
    network.eval()
    with torch.no_grad(), counter:
        network(torch.zeros(1, 3, 32, 32))
    assert summary.total_flops == counter.get_total_flops() == sum(r.flops for r in summary.rows) > 0


def test_analytic_field_equals_the_gradient_probe_on_a_single_path_net(make_cfg) -> None:
    network = build_network(make_cfg(["model.stages=4", "model.convs_per_stage=2", "data.image_size=96"]))
    shape = (1, 3, 96, 96)
    trunk, where = spatial_trunk(network, shape)
    assert where == "encoder"
    analytic = receptive_field(trunk, shape)
    assert analytic == 76  # (1 + 2 + 2 + 1) -> +8+2 -> +16+4 -> +32+8 over four stages of two 3x3 convs + 2x2 pool
    assert effective_receptive_field(trunk, shape).extent == (analytic, analytic)


def test_resnet_field_is_the_maximum_over_its_paths(make_cfg) -> None:
    """Each block's field is that of its conv path, the larger of conv path and shortcut; the probe agrees."""
    network = build_network(make_cfg(["model=resnet", "model.depth=8"]))
    shape = (1, 3, 32, 32)
    rows = {r.name: r for r in summarize(network, shape).rows}
    # stem 3 -> block 0: 7 -> block 1 (stride 2): 9, 13 -> block 2 (stride 2): 17, 25; shortcuts only add 0
    assert [rows[f"blocks.{i}.conv2"].rf for i in range(3)] == [7, 13, 25]
    assert rows["blocks.2.act2"].rf == 25  # after the addition: max(25, shortcut path's 13)
    trunk, where = spatial_trunk(network, shape)
    assert where == "stem -> blocks"
    assert effective_receptive_field(trunk, shape).extent == (25, 25)


def test_inspect_prints_the_table_and_saves_the_erf_heat_map(make_cfg, tmp_path: Path, capsys) -> None:
    assert main(["model=resnet", "model.depth=8", "--effective-rf", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in build_network(make_cfg(["model=resnet", "model.depth=8"])).parameters())
    assert f"Total params         : {params:,}" in out
    for text in ("blocks.0.conv1", "Total FLOPs", "Receptive field", "gradient support            : 25x25 px"):
        assert text in out, text
    image = matplotlib.image.imread(tmp_path / "erf.png")
    assert image.ndim == 3 and image.shape[0] > 100


def test_inspect_rejects_a_bad_config_in_one_sentence() -> None:
    result = run_cli("experiments.inspect", "model.stages=9")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: model.stages=9 is invalid")


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _task_checkpoint(make_cfg, path: Path, overrides: list[str]) -> dict:
    """A checkpoint as Lightning writes it for a task (weights under ``network.``); returns its state_dict."""
    from experiments.build import build_task

    task = build_task(make_cfg(overrides))
    state = task.state_dict()
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.6.0", "epoch": 1}, path)
    return state


def _one_sentence_error(capsys, path: Path) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"error: --ckpt={path} is invalid: ") and err.rstrip().endswith("."), err
    return err


@pytest.mark.parametrize("container", ["zip", "bare-pickle"])
def test_inspect_never_runs_code_pickled_in_a_checkpoint(tmp_path: Path, capsys, container: str) -> None:
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    if container == "zip":
        torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0", "x": _Payload(marker)}, evil)
    else:
        evil.write_bytes(pickle.dumps(_Payload(marker)))
    assert main(["--ckpt", str(evil)]) == 2
    err = _one_sentence_error(capsys, evil)
    assert ("refuses to execute" if container == "zip" else "arbitrary code") in err
    assert not marker.exists()


def test_inspect_refuses_a_checkpoint_of_another_network(make_cfg, tmp_path: Path, capsys) -> None:
    other = tmp_path / "wide.ckpt"
    _task_checkpoint(make_cfg, other, ["model.width=8"])
    assert main(["--ckpt", str(other)]) == 2  # the default cnn has model.width=16: every conv has another shape
    assert "saved from a different network" in _one_sentence_error(capsys, other)
    resnet = tmp_path / "resnet.ckpt"
    _task_checkpoint(make_cfg, resnet, ["model=resnet", "model.depth=8"])
    assert main(["--ckpt", str(resnet)]) == 2
    assert "weights missing" in _one_sentence_error(capsys, resnet)


def test_inspect_loads_a_good_checkpoint_and_prints_the_table(make_cfg, tmp_path: Path, capsys) -> None:
    good = tmp_path / "best.ckpt"
    torch.manual_seed(1)  # other weights than the seeded network inspect builds
    state = _task_checkpoint(make_cfg, good, ["model=resnet", "model.depth=8"])
    assert main(["model=resnet", "model.depth=8", "--ckpt", str(good)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    for text in ("blocks.0.conv1", "Total params", "Total FLOPs", "Receptive field"):
        assert text in captured.out, text
    network = build_network(make_cfg(["model=resnet", "model.depth=8"]))
    load_network_weights(network, good, key="--ckpt")
    assert all(torch.equal(v, state[f"network.{k}"]) for k, v in network.state_dict().items())
