"""A session-wide trained autoencoder run for the reconstruction, probe and transfer tests (via ``pytest_plugins``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY, shared_run

#: three short epochs on shapes, enough for the reconstruction loss to fall far and for features worth probing:
#: small batches at a high rate (192 steps) and average pooling, whose random features are the weaker baseline
#: (seeds 0-2: autoencoder probe 0.37-0.41 against random 0.30-0.33 on shapes; tests/test_probe.py)
OVERRIDES = [*TINY, "model=autoencoder", "pooling=avg", "data.train_size=1024", "data.val_size=128",
             "data.test_size=512", "data.batch_size=16", "optimizer.lr=0.01", "trainer.max_epochs=3", "diagnostics=off"]


@pytest.fixture(scope="session")
def autoencoder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(run dir, metrics.json record) of a completed 3-epoch autoencoder run on shapes, seed 0, trained once per
    session (``shared_run``)."""
    return shared_run(tmp_path_factory, "autoencoder", OVERRIDES)
