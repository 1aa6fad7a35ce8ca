"""Screenshots of TensorBoard over a small sweep, for the README: Time Series, HParams and custom scalars.

    python scripts/screenshots.py                      # trains a tiny 2x2 sweep (activation x seed) first, ~1-2 min
    python scripts/screenshots.py --sweep outputs/multirun/<date>/<time> --out docs/images

Starts ``tensorboard --host 127.0.0.1`` on the sweep, waits until it serves every run and the HParams table, then
has a headless Chromium (Debian: ``apt-get install chromium``) save ``tensorboard_<page>.png`` for each page, reduced
to a 128-colour palette so each stays small. Not part of the test suite: it needs a browser and takes minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = ("timeseries", "hparams", "custom_scalars")
#: the sigmoid-vs-ReLU study on a CPU budget: two activations x two seeds, figures every epoch
SWEEP = [
    "experiment=sigmoid_vs_relu", "hydra.sweeper.params.activation='relu,sigmoid'", "seed=0,1",
    "data.train_size=1024", "data.val_size=256", "data.test_size=256", "trainer.max_epochs=4",
    "trainer.log_every_n_steps=4", "diagnostics.gradients.interval=8", "diagnostics.activations.interval=8",
    "trainer.enable_progress_bar=false", "print_config=false",
]


def train_sweep(folder: Path) -> None:
    command = [sys.executable, "-m", "experiments.train", "-m", *SWEEP, f"hydra.sweep.dir={folder}"]
    print("training:", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_served(base: str, runs: int, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until TensorBoard lists ``runs`` runs and the HParams table has its metric columns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tensorboard exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/data/runs", timeout=5) as response:
                served = json.load(response)
            request = urllib.request.Request(f"{base}/data/plugin/hparams/experiment", method="POST",
                                             data=b'{"experimentName": ""}',
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                columns = json.load(response).get("metricInfos")
            if len(served) >= runs and columns:
                print("runs as TensorBoard lists them:", *sorted(served), sep="\n  ", flush=True)
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise SystemExit(f"tensorboard at {base} did not serve {runs} runs within {timeout:.0f} s")


def shrink(png: Path, colours: int = 128) -> None:
    """A palette PNG: TensorBoard's flat UI colours survive, the file gets several times smaller."""
    from PIL import Image

    with Image.open(png) as image:
        reduced = image.convert("RGB").quantize(colors=colours, method=Image.Quantize.FASTOCTREE)
    reduced.save(png, optimize=True)


def screenshot(browser: str, url: str, out: Path, size: str, wait_ms: int) -> None:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size}", f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=wait_ms / 1000 + 120)
    shrink(out)
    print(f"{out} ({out.stat().st_size // 1024} kB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, help="a sweep dir to show (default: train a tiny 2x2 sweep)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--size", default="1600,1000", help="browser window, width,height")
    parser.add_argument("--wait-ms", type=int, default=15000, help="virtual time the page gets to load its data")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tb-screenshots-") as tmp:
        sweep = args.sweep or Path(tmp) / "sweep"
        if args.sweep is None:
            train_sweep(sweep)
        runs = len({p.parent for p in sweep.rglob("events.out.tfevents.*")})
        tensorboard = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
        port = free_port()
        process = subprocess.Popen(
            [*([tensorboard] if tensorboard else [sys.executable, "-m", "tensorboard.main"]), "--logdir", str(sweep),
             "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_served(base, runs, process)
            args.out.mkdir(parents=True, exist_ok=True)
            for page in PAGES:
                screenshot(args.browser, f"{base}/#{page}", args.out / f"tensorboard_{page}.png", args.size,
                           args.wait_ms)
        finally:
            process.terminate()  # the server this script started, by its PID
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
