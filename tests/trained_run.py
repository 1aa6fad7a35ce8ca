"""A session-wide tiny trained run for the checkpoint and evaluate tests (via ``pytest_plugins``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY, shared_run

#: small enough to train in seconds, large enough that the test split gives several batches
OVERRIDES = [*TINY, "data.train_size=192", "data.test_size=96", "trainer.max_epochs=2", "diagnostics=off"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(run dir, metrics.json record) of a completed 2-epoch run. Trained once per session (``shared_run``)."""
    return shared_run(tmp_path_factory, "trained", OVERRIDES)
