"""Bar plots draw the 95 % t-interval as error bars and say so (experiments.reporting.plots)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.reporting.aggregate import summarize
from experiments.reporting.runs import collect_runs

from .conftest import write_sweep


def test_bar_error_bars_are_the_95_percent_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plots = pytest.importorskip("experiments.reporting.plots")
    from matplotlib.axes import Axes

    drawn: list[dict] = []
    original_bar = Axes.bar

    def spy_bar(self, x, height, *args, **kwargs):
        drawn.append({"height": list(height), "yerr": list(kwargs.get("yerr", [])), "axes": self})
        return original_bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy_bar)
    accs = {1: {"test/acc": 0.90}, 2: {"test/acc": 0.92}, 3: {"test/acc": 0.94}}
    sweep = write_sweep(tmp_path / "sweep", {("a=1",): accs, ("a=2",): {1: {"test/acc": 0.5}}})
    written = plots.plot_bars(summarize(collect_runs([sweep])), tmp_path)
    assert [p.name for p in written] == ["bars_test_acc.png"]
    (bars,) = drawn
    assert bars["height"] == [pytest.approx(0.92), pytest.approx(0.5)]
    # mean 0.92, s 0.02, n 3: half-width 4.303 * 0.02 / sqrt(3) = 0.04969; one seed: no bar
    assert bars["yerr"] == [pytest.approx(4.303 * 0.02 / math.sqrt(3), rel=1e-4), 0.0]
    axes = bars["axes"]
    assert "95 % Student-t CI" in axes.get_title() and "95 % CI" in axes.get_ylabel()
