"""A session-wide tiny trained run for the checkpoint and evaluate tests (via ``pytest_plugins``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import compose
from tests.conftest import TINY

#: small enough to train in seconds, large enough that the test split gives several batches
OVERRIDES = [*TINY, "data.train_size=192", "data.test_size=96", "trainer.max_epochs=2", "diagnostics=off"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(run dir, metrics.json record) of a completed 2-epoch run."""
    from experiments.train import train

    cfg = compose(OVERRIDES)
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(tmp_path_factory.mktemp("trained") / "run")
    record = train(cfg)
    assert record["status"] == "completed"
    return Path(cfg.run_dir), record
