"""Bar plots draw the bounded 95 % interval as error bars on a 0–1 axis with a chance line, and say so."""

from __future__ import annotations

import json
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
    summary = summarize(collect_runs([sweep]))
    written = plots.plot_bars(summary, tmp_path)
    assert [p.name for p in written] == ["bars_test_acc.png"]
    (bars,) = drawn
    assert bars["height"] == [pytest.approx(0.92), pytest.approx(0.5)]
    # mean 0.92, n 3: the logit-t interval [0.8549, 0.9591] (z = logit of the values, t(0.975, 2) = 4.303), drawn
    # as asymmetric error bars below and above the mean; one seed: no bar
    z = [math.log(v / (1 - v)) for v in (0.90, 0.92, 0.94)]
    mean, sd = sum(z) / 3, math.sqrt(sum((x - sum(z) / 3) ** 2 for x in z) / 2)
    low, high = (1 / (1 + math.exp(-(mean + sign * 4.303 * sd / math.sqrt(3)))) for sign in (-1, 1))
    below, above = bars["yerr"]
    assert below == [pytest.approx(0.92 - low, abs=1e-4), 0.0] and above == [pytest.approx(high - 0.92, abs=1e-4), 0.0]
    axes = bars["axes"]
    assert "95 % CI (logit-t, n=3)" in axes.get_title() and "95 % CI" in axes.get_ylabel()
    assert axes.get_ylim() == (0.0, 1.0)  # accuracy: a bounded axis
    assert not [line for line in axes.get_lines() if "chance" in str(line.get_label())]  # no class count recorded


def test_bars_show_the_chance_level_of_a_recorded_class_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    plots = pytest.importorskip("experiments.reporting.plots")
    sweep = write_sweep(tmp_path / "sweep", {("a=1",): {s: {"test/acc": 0.3 + 0.01 * s} for s in (1, 2, 3)}})
    for metrics in sweep.rglob("metrics.json"):  # 4 classes, 200 test images, as a classification run records them
        record = json.loads(metrics.read_text())
        record.update(class_names=["a", "b", "c", "d"], test_count=200)
        metrics.write_text(json.dumps(record))
    summary = summarize(collect_runs([sweep]))
    assert summary.chance("test/acc") == 0.25 and summary.chance("test/loss") is None
    import matplotlib.pyplot as plt

    created = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: created.append(fig) or path)
    plots.plot_bars(summary, tmp_path)
    (axes,) = created[0].axes
    chance = [line for line in axes.get_lines() if "chance" in str(line.get_label())]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.25, 0.25]
    assert chance[0].get_label() == "chance (1/4)"
    plt.close(created[0])
