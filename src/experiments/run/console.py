"""What Lightning prints on a run's console, trimmed to what a reader of this project needs.

Two things Lightning adds that say nothing about the run:

* a "💡 Tip:" line advertising a cloud service (``litlogger``, ``litmodels``) at every start. Lightning has no
  switch for it; it is an info message of its rank-zero logger, so a logging filter on that logger drops it
  (:func:`quiet_lightning_tips`) and leaves every other message alone;
* ``v_num`` on the progress bar: the logger's version, here the tail of the TensorBoard run name and the CSV
  version joined (``v_num: lts_``), which means nothing next to the loss. Lightning's documented way to change the
  bar's metrics is to override the progress bar's ``get_metrics``; :func:`without_version` does that for the bar a
  run gets (the default tqdm bar, or the ``rich_progress_bar`` callback's).

Which bar: a run shows tqdm's bar (Lightning's ``TQDMProgressBar``) unless ``callbacks=[default,rich_progress_bar]``
asks for Rich's. Lightning itself would pick Rich whenever the ``rich`` package is installed, which it always is here
(the config tree needs it), so the ``rich_progress_bar`` option would change nothing: the default is pinned to tqdm
so that the option does what its name says.

And one thing Lightning leaves out: with fewer training batches per epoch than ``trainer.log_every_n_steps`` no
step is ever logged (no learning rate, no step loss), with only a Python warning to say so.
:class:`LogIntervalCap` lowers the interval to the number of batches for such a run and says so in one line.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar, TQDMProgressBar

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
    """``callbacks`` with a progress bar that does not show ``v_num``: tqdm's (the default, see the module docstring)
    added when the run has none and shows one; a plain Rich or tqdm bar from the callbacks group becomes its subclass
    here (same object and settings: the subclass only overrides ``get_metrics``)."""
    bars = [c for c in callbacks if isinstance(c, ProgressBar)]
    for bar in bars:
        if type(bar) is RichProgressBar:
            bar.__class__ = RichBar
        elif type(bar) is TQDMProgressBar:
            bar.__class__ = TqdmBar
    if bars or not enabled:
        return callbacks
    return [*callbacks, TqdmBar()]


#: Lightning's warning that :class:`LogIntervalCap` answers with its own line
_FEW_BATCHES_WARNING = ".*is smaller than the logging interval.*"


class LogIntervalCap(Callback):
    """Step values (the learning rate, the step loss) logged however short the epoch: ``trainer.log_every_n_steps``
    capped by the number of training batches per epoch, said once in one line, instead of Lightning's warning and
    nothing logged.

    The number of batches is known only once the data are set up, inside ``fit``: ``on_train_start`` comes after
    Lightning has counted them (``trainer.num_training_batches``, after ``limit_train_batches``) and before the first
    step, and the interval is a plain attribute the logger connector reads at each step. A resumed run meets the
    same count and caps again; nothing is saved in checkpoints."""

    def __init__(self) -> None:
        warnings.filterwarnings("ignore", _FEW_BATCHES_WARNING)
        self.capped: tuple[int, int] | None = None  # (configured interval, batches) when capped

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        interval, batches = trainer.log_every_n_steps, trainer.num_training_batches
        if not trainer.loggers or trainer.fast_dev_run or not interval or not isinstance(batches, int) \
                or not 0 < batches < interval:  # (an iterable dataset of unknown length counts inf batches)
            return
        trainer.log_every_n_steps = batches
        self.capped = (interval, batches)
        if trainer.is_global_zero:
            print(f"note: trainer.log_every_n_steps={interval} is more than the {batches} training batches of an "
                  f"epoch: step values (learning rate, loss) are logged every {batches} steps", file=sys.stderr)
