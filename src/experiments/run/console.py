"""What Lightning prints on a run's console, trimmed to what a reader of this project needs.

Two things Lightning adds that say nothing about the run:

* a "💡 Tip:" line advertising a cloud service (``litlogger``, ``litmodels``) at every start. Lightning has no
  switch for it; it is an info message of its rank-zero logger, so a logging filter on that logger drops it
  (:func:`quiet_lightning_tips`) and leaves every other message alone;
* ``v_num`` on the progress bar: the logger's version, here the tail of the TensorBoard run name and the CSV
  version joined (``v_num: lts_``), which means nothing next to the loss. Lightning's documented way to change the
  bar's metrics is to override the progress bar's ``get_metrics``; :func:`without_version` does that for the bar a
  run gets (Lightning's default, or the ``rich_progress_bar`` callback).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar

#: the loggers Lightning's rank-zero messages go through (lightning_utilities reassigns one to the other)
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                     "lightning_utilities.core.rank_zero")  # the last one emits the tips


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip:" adverts (litlogger, litmodels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


_FILTER = _NoAdverts()


def quiet_lightning_tips() -> None:
    """Filter Lightning's advert tips out of its rank-zero logger (idempotent: the same filter object)."""
    for logger in (logging.getLogger(name) for name in RANK_ZERO_LOGGERS):
        logger.addFilter(_FILTER)


class _WithoutVersion:
    """The progress bar's metrics without ``v_num`` (Lightning's documented ``get_metrics`` override)."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        items.pop("v_num", None)
        return items


class RichBar(_WithoutVersion, RichProgressBar):
    """Lightning's Rich progress bar without ``v_num``."""


class TqdmBar(_WithoutVersion, TQDMProgressBar):
    """Lightning's tqdm progress bar without ``v_num``."""


def without_version(callbacks: list, enabled: bool) -> list:
    """``callbacks`` with a progress bar that does not show ``v_num``: Lightning's default choice (Rich when it is
    installed, else tqdm) added when the run has none and shows one; a plain Rich or tqdm bar from the callbacks
    group becomes its subclass here (same object and settings: the subclass only overrides ``get_metrics``)."""
    bars = [c for c in callbacks if isinstance(c, ProgressBar)]
    for bar in bars:
        if type(bar) is RichProgressBar:
            bar.__class__ = RichBar
        elif type(bar) is TQDMProgressBar:
            bar.__class__ = TqdmBar
    if bars or not enabled:
        return callbacks
    return [*callbacks, RichBar() if importlib.util.find_spec("rich") is not None else TqdmBar()]
