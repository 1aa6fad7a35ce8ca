"""``tensorboard --logdir <sweep dir>`` shows every job of a sweep side by side, HParams columns aligned.

A real TensorBoard server is started on 127.0.0.1 over a real 2-job sweep and asked through the same HTTP
data API its web page uses, so this checks what a user sees, not just what is in the event files.
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
from pathlib import Path
from typing import Any

import pytest

from tests.sweep_cli import NO_DIAGNOSTICS, explain, job_records, run_sweep

READY_TIMEOUT_S = 90  # server start plus its first pass over the event files, on a busy 2-core machine
RUNS = ["0/tensorboard", "1/tensorboard"]


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


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("tb") / "sweep"
    result = run_sweep(sweep, NO_DIAGNOSTICS, "optimizer.lr=0.004,0.002")
    assert result.returncode == 0, explain(result)
    return sweep


@pytest.fixture(scope="module")
def server(sweep: Path) -> Iterator[Server]:
    executable = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    command = [executable] if executable else [sys.executable, "-m", "tensorboard.main"]
    port = free_port()
    process = subprocess.Popen(
        [*command, "--logdir", str(sweep), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = Server(port)
        client.wait_for(lambda: sorted(client.get("/data/runs")) == RUNS, process)
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
    """Every session (run) with all hparam and metric columns, as the HParams table view requests them."""
    info = experiment(server)
    columns = [{"hparam": h["name"], "includeInResult": True} for h in info["hparamInfos"]]
    columns += [{"metric": m["name"], "includeInResult": True} for m in info["metricInfos"]]
    request = {"experimentName": "", "colParams": columns, "startIndex": 0, "sliceSize": 100,
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}
    return {group["name"]: group for group in server.post("/data/plugin/hparams/session_groups", request)
            ["sessionGroups"]}


def test_every_job_is_a_run_with_its_scalars(server: Server, sweep: Path) -> None:
    tags = server.get("/data/plugin/scalars/tags")
    records = job_records(sweep)
    for num, run in enumerate(RUNS):
        for tag in ("train/loss_epoch", "val/acc", "val/loss", "test/acc"):
            assert tag in tags[run], (run, tag)
        points = server.get("/data/plugin/scalars/scalars", run=run, tag="val/acc")  # [wall_time, step, value]
        assert len(points) == 2  # one per epoch
        assert points[-1][2] == pytest.approx(records[num]["history"]["val/acc"][-1], abs=1e-6)


def test_hparams_tab_lists_swept_values_and_final_metrics_with_aligned_columns(server: Server, sweep: Path) -> None:
    info = experiment(server)
    names = {h["name"] for h in info["hparamInfos"]}
    assert {"optimizer.lr", "seed", "activation", "model", "experiment"} <= names
    assert {"final/test/acc", "final/val/acc", "final/train/loss"} <= {m["name"]["tag"] for m in info["metricInfos"]}

    groups = session_groups(server)
    assert sorted(groups) == RUNS
    assert groups[RUNS[0]]["hparams"].keys() == groups[RUNS[1]]["hparams"].keys()  # one key set per sweep
    records = job_records(sweep)
    for num, run in enumerate(RUNS):
        hparams = groups[run]["hparams"]
        assert hparams["optimizer.lr"] == pytest.approx([0.004, 0.002][num])
        metrics = {m["name"]["tag"]: m["value"] for m in groups[run]["metricValues"]}
        assert metrics["final/test/acc"] == pytest.approx(records[num]["metrics"]["test/acc"], abs=1e-6)
