"""trainer.compile and trainer.channels_last: the task runs a compiled view of its network (eagerly on the steps a
diagnostic hooks its layers), checkpoints stay those of the plain network and load in ``evaluate``.

The fast tests compile with torch.compile's ``eager`` backend (Dynamo's tracing, guards and recompilation, no code
generation); the slow one runs the real inductor backend on the CPU through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.evaluate import evaluate
from experiments.run.checkpoints import load_checkpoint
from experiments.speed.compile import CompiledNetwork, SpeedSwitches
from experiments.speed.settings import SpeedSettings
from experiments.train import train
from tests.conftest import TINY, run_cli


def tiny_network() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2))


def test_the_compiled_view_computes_the_network_and_runs_eagerly_while_a_layer_is_hooked() -> None:
    torch.manual_seed(0)
    network = tiny_network().eval()
    view = CompiledNetwork(network, "default", backend="eager")
    x = torch.randn(4, 3, 8, 8)
    assert torch.allclose(view(x), network(x)) and view.calls == {"compiled": 1, "eager": 0}

    seen: list[torch.Size] = []
    handle = network[2].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    view(x)  # a compiled graph would skip the hook: this call runs the plain network
    assert seen == [torch.Size([4, 4, 8, 8])] and view.calls["eager"] == 1
    handle.remove()
    view(x)
    assert view.calls == {"compiled": 2, "eager": 1} and len(seen) == 1
    assert not [k for k in network.state_dict() if "_orig_mod" in k]  # the network itself is untouched


def test_channels_last_converts_the_convolution_weights_at_setup() -> None:
    task = nn.Module()
    task.network = tiny_network()
    settings = SpeedSettings(threads=1, packed_jobs=1, compile="off", channels_last=True, device_data_gb=4.0,
                             precision="32-true", cudnn_benchmark=None)
    SpeedSwitches(settings).setup(None, task, "fit")  # type: ignore[arg-type]
    assert task.network[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not task.network[0].weight.is_contiguous()


def test_a_compiled_run_keeps_its_diagnostics_and_leaves_plain_checkpoints(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(SpeedSwitches, "backend", "eager")
    record = train(make_cfg(["trainer.compile=default", "trainer.channels_last=true", "trainer.threads=1",
                             "model.width=4"]))  # the default diagnostics
    assert record["status"] == "completed", record["error"]
    written = json.loads(Path(record["run_dir"], "metrics.json").read_text())
    speed = written["speed"]
    assert (speed["compile"], speed["channels_last"], speed["threads"]) == ("default", True, 1)
    assert speed["data"]["placement"] == "resident" and speed["data"]["device"] == "cpu"
    # step 0 ran eagerly (the gradient probes' call order, the first activation statistics), the rest compiled
    assert speed["calls"]["eager"] >= 1 and speed["calls"]["compiled"] > speed["calls"]["eager"]
    assert written["activation_stats"]["layers"] and written["vanishing_ratio"] is not None

    best = Path(record["best_checkpoint"])
    assert not [k for k in load_checkpoint(best)["state_dict"] if "_orig_mod" in k]
    again = evaluate(record["run_dir"], ckpt="best", accelerator="cpu")["metrics"]
    assert again["test/acc"] == pytest.approx(record["metrics"]["test/acc"])


@pytest.mark.slow  # inductor generates and compiles C++ for the CPU: about half a minute with a cold cache
def test_the_cli_trains_with_the_inductor_backend_on_the_cpu(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_cli("experiments.train", *TINY, "model.width=4", "trainer.compile=default", "diagnostics=off",
                     f"hydra.run.dir={run}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    speed = json.loads((run / "metrics.json").read_text())["speed"]
    assert speed["compile"] == "default" and speed["calls"]["compiled"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="CUDA graphs, bf16 autocast and device-resident data need a GPU")
def test_a_gpu_run_trains_compiled_with_its_data_on_the_device(make_cfg) -> None:
    record = train(make_cfg(["trainer=gpu", "trainer.compile=reduce-overhead", "trainer.max_epochs=2",
                             "trainer.accelerator=gpu"]))
    assert record["status"] == "completed", record["error"]
    speed = record["speed"]
    assert (speed["precision"], speed["channels_last"], speed["compile"]) == ("bf16-mixed", True, "reduce-overhead")
    assert speed["data"]["placement"] == "resident" and speed["data"]["device"].startswith("cuda")
    assert speed["calls"]["compiled"] > speed["calls"]["eager"] >= 1
    assert record["metrics"]["train/loss"] is not None and record["metrics"]["test/acc"] is not None  # finite
