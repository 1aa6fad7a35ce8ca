"""``tensorboard --logdir <sweep dir>`` tells a sweep's story: runs named by their swept overrides, a custom-scalars
layout, figures at every validation epoch, HParams with the swept keys first and aligned columns.

A real TensorBoard server is started on 127.0.0.1 over a real 2x2 sweep (activation x seed) and asked through the same
HTTP data API its web page uses, so this checks what a user sees, not just what is in the event files.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.sweep_cli import explain, job_records, run_sweep

READY_TIMEOUT_S = 90  # server start plus its first pass over the event files, on a busy 2-core machine
#: default diagnostics measuring every other step (so each validation epoch has a new figure to draw), no model card
DIAGNOSTICS = ["diagnostics.gradients.interval=2", "diagnostics.activations.interval=2", "~diagnostics.summary",
               "trainer.log_every_n_steps=1", "print_config=false"]


@dataclass(frozen=True)
class Sweep:
    """A sweep to run, and the TensorBoard runs it must show: job dir / TensorBoard folder / swept overrides."""

    overrides: tuple[str, ...]
    runs: tuple[str, ...]
    swept: tuple[str, ...]
    dir: Path = Path()


#: by default 2 jobs; the 2x2 grid (seed given first on the command line, listed last in the names) is slow
SWEEPS = [
    Sweep(("activation=relu,sigmoid",), ("0/tensorboard/activation=relu", "1/tensorboard/activation=sigmoid"),
          ("activation",)),
    pytest.param(Sweep(("seed=0,1", "activation=relu,sigmoid"),
                       ("0/tensorboard/activation=relu,seed=0", "1/tensorboard/activation=sigmoid,seed=0",
                        "2/tensorboard/activation=relu,seed=1", "3/tensorboard/activation=sigmoid,seed=1"),
                       ("activation", "seed")), marks=pytest.mark.slow),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """Minimal client for TensorBoard's JSON data API."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **query: str) -> Any:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"{self.base}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def wait_for(self, ready: Callable[[], bool], process: subprocess.Popen) -> None:
        """Poll until ``ready()`` holds; fail early if the server died, and after a bounded time."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert process.poll() is None, f"tensorboard exited with {process.returncode}"
            try:
                if ready():
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
                pass  # not listening yet, or still loading
            time.sleep(0.5)
        pytest.fail(f"tensorboard at {self.base} not ready after {READY_TIMEOUT_S}s")


@pytest.fixture(scope="session", params=SWEEPS, ids=["2-jobs", "2x2"])
def sweep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    planned: Sweep = request.param
    folder = tmp_path_factory.mktemp("tb") / "sweep"
    result = run_sweep(folder, *DIAGNOSTICS, *planned.overrides)
    assert result.returncode == 0, explain(result)
    return Sweep(planned.overrides, planned.runs, planned.swept, folder)


@pytest.fixture(scope="session")
def server(sweep: Sweep) -> Iterator[Server]:
    executable = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    command = [executable] if executable else [sys.executable, "-m", "tensorboard.main"]
    port = free_port()
    process = subprocess.Popen(
        [*command, "--logdir", str(sweep.dir), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = Server(port)
        client.wait_for(lambda: sorted(client.get("/data/runs")) == list(sweep.runs), process)
        client.wait_for(lambda: bool(experiment(client)["metricInfos"]), process)
        yield client
    finally:
        process.terminate()  # by its PID: only the server this test started
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def experiment(server: Server) -> dict[str, Any]:
    return server.post("/data/plugin/hparams/experiment", {"experimentName": ""})


def session_groups(server: Server) -> dict[str, Any]:
    """Every session group (a run: one session each) by its run, with all hparam and metric columns, as the HParams
    table view requests them."""
    info = experiment(server)
    columns = [{"hparam": h["name"], "includeInResult": True} for h in info["hparamInfos"]]
    columns += [{"metric": m["name"], "includeInResult": True} for m in info["metricInfos"]]
    request = {"experimentName": "", "colParams": columns, "startIndex": 0, "sliceSize": 100,
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}
    groups = server.post("/data/plugin/hparams/session_groups", request)["sessionGroups"]
    assert all(len(group["sessions"]) == 1 for group in groups)
    return {group["sessions"][0]["name"]: group for group in groups}


def test_runs_are_named_by_their_swept_overrides_with_their_scalars(server: Server, sweep: Sweep) -> None:
    assert sorted(server.get("/data/runs")) == list(sweep.runs)
    tags = server.get("/data/plugin/scalars/tags")
    records = job_records(sweep.dir)
    for num, run in enumerate(sweep.runs):
        for tag in ("train/loss_epoch", "val/acc", "val/loss", "~test/acc", "~epoch", "~grad_norm/classifier.4"):
            assert tag in tags[run], (run, tag)
        # the learning curves under their own names lead the Time Series page; every other tag follows after "~"
        assert all(t.split("/")[0] in ("train", "val") or t.startswith("~") for t in tags[run]), tags[run]
        points = server.get("/data/plugin/scalars/scalars", run=run, tag="val/acc")  # [wall_time, step, value]
        assert len(points) == 2  # one per epoch
        assert points[-1][2] == pytest.approx(records[num]["history"]["val/acc"][-1], abs=1e-6)


def test_the_custom_scalars_layout_is_served_and_its_charts_draw_the_runs_curves(server: Server, sweep: Sweep) -> None:
    layout = server.get("/data/plugin/custom_scalars/layout")
    assert [c["title"] for c in layout["category"]] == ["learning", "gradient flow", "activations"]
    charts = {chart["title"]: chart["multiline"]["tag"] for c in layout["category"] for chart in c["chart"]}
    assert {"loss: train vs val", "acc: train vs val", "train-val gap (positive: better on train)",
            "learning rate"} <= set(charts)

    def drawn(regex: str, run: str = sweep.runs[1]) -> list[str]:  # a sigmoid run
        return sorted(server.get("/data/plugin/custom_scalars/scalars", run=run, tag=regex)["tag_to_events"])

    assert [drawn(regex) for regex in charts["loss: train vs val"]] == [["train/loss_epoch"], ["val/loss"]]
    layers = job_records(sweep.dir)[1]["gradient_flow"]["layers"]  # the same network in every job: one merged chart
    (title,) = [t for t in charts if t.startswith("gradient norm per layer")]
    assert [drawn(regex) for regex in charts[title]] == [[f"~grad_norm/{layer}"] for layer in layers]  # input->output
    assert drawn(charts["vanishing ratio (first / last layer gradient norm)"][0]) == ["~diagnostics/vanishing_ratio"]
    assert drawn(charts["saturated units per layer (sigmoid, tanh)"][0])  # run 1 is a sigmoid run


def test_figures_are_in_the_images_tab_for_every_validation_epoch(server: Server, sweep: Sweep) -> None:
    tags = server.get("/data/plugin/images/tags")
    for run in sweep.runs:
        for tag in ("~diagnostics/gradient_flow", "~diagnostics/activations"):
            assert tag in tags[run], (run, tag)
            steps = [image["step"] for image in server.get("/data/plugin/images/images", run=run, tag=tag, sample="0")]
            assert len(set(steps)) >= 2, (run, tag, steps)  # more than one epoch, not only at initialisation


def test_hparams_lists_the_swept_keys_first_and_the_final_metrics(server: Server, sweep: Sweep) -> None:
    info = experiment(server)
    names = [h["name"] for h in info["hparamInfos"]]
    swept = len(sweep.swept)
    assert names[:swept] == list(sweep.swept) and all(h.get("differs") for h in info["hparamInfos"][:swept])
    assert not any(h.get("differs") for h in info["hparamInfos"][swept:])
    assert {"optimizer.lr", "model", "experiment"} <= set(names)
    columns = [m.get("displayName") for m in info["metricInfos"]]
    assert columns[:5] == ["test/acc", "val/acc", "train/acc", "params", "wall_time_s"]
    assert {"test/loss", "val/loss", "train/loss"} <= set(columns)

    groups = session_groups(server)
    assert sorted(groups) == list(sweep.runs)
    assert all(groups[run]["hparams"].keys() == groups[sweep.runs[0]]["hparams"].keys() for run in sweep.runs)
    records = job_records(sweep.dir)
    for num, run in enumerate(sweep.runs):
        hparams = groups[run]["hparams"]
        assert (hparams["activation"], hparams["seed"]) == (records[num]["choices"]["activation"], records[num]["seed"])
        name = ",".join(f"{key}={hparams[key]:g}" if key == "seed" else f"{key}={hparams[key]}" for key in sweep.swept)
        assert run == f"{num}/tensorboard/{name}"  # the run's name is its swept values
        assert groups[run]["name"] == f"{name} ({num})"  # the table's Trial ID: the name first, then the job
        metrics = {m["name"]["tag"]: m["value"] for m in groups[run]["metricValues"]}
        assert metrics["~final/test/acc"] == pytest.approx(records[num]["metrics"]["test/acc"], abs=1e-6)
        assert metrics["~final/params"] == records[num]["params"]
