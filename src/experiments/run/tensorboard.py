"""TensorBoard as a user reads it: runs named by what differs, learning curves first, HParams columns that matter.

Lightning's ``TensorBoardLogger`` with three choices of ours:

* **Run names.** Events go into ``<run dir>/tensorboard/<name>/`` where ``<name>`` is what sets the run apart
  (``activation=sigmoid,seed=0``; :mod:`experiments.naming`), so ``tensorboard --logdir <sweep dir>`` lists
  ``0/tensorboard/activation=sigmoid,seed=0`` ... instead of fifteen ``<n>/tensorboard``. A run dir that already
  holds events continues that TensorBoard run (a resume): the name is found on disk, not recomputed.
* **Tag order.** TensorBoard's Time Series page groups cards by a tag's first path segment, sorts the groups in
  natural order (digits and ``/`` before letters, then by character code) and opens the first two. The learning
  curves (``train/``, ``val/``) keep their names and the learning-rate monitor's ``lr-<optimizer>`` joins
  ``train/``; every other tag (diagnostics, the one-point ``test/`` results, final metrics, Lightning's ``epoch``
  counter) is filed under ``~<tag>``: ``~`` sorts after every letter, so the page opens on train and validation
  loss and accuracy and the other sections follow. Only TensorBoard sees the prefix (:func:`tensorboard_tag`); CSV
  and MLflow keep the plain names.
* **HParams.** :meth:`RunTensorBoardLogger.log_hparams_table` writes the HParams experiment itself (TensorBoard's
  own protos): the sweep's swept keys marked as varying, which TensorBoard lists first, and as metric columns only
  the final metrics given (train, val, test, parameter count, wall time), titled by their plain names.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from experiments.run.layout import TENSORBOARD, TENSORBOARD_EVENTS

#: tag groups that are learning curves; they lead the Time Series page under their own names (test results are one
#: point each, shown in HParams and under ``~test/``)
LEARNING_GROUPS = ("train", "val")
#: prefix of every other tag in TensorBoard: sorts after every letter, so these sections come last
SECTION = "~"
#: HParams metric columns are scalars ``~final/<metric>``
FINAL = "final"


def tensorboard_tag(tag: str) -> str:
    """The name a tag gets in TensorBoard (see the module doc): learning curves unchanged, ``lr-*`` under
    ``train/``, anything else behind :data:`SECTION`."""
    if tag.split("/", 1)[0] in LEARNING_GROUPS or tag.startswith(SECTION):
        return tag
    if tag.startswith("lr-"):
        return f"train/{tag}"
    return SECTION + tag


def final_tag(metric: str) -> str:
    """The scalar tag holding a run's final value of ``metric`` (an HParams metric column)."""
    return tensorboard_tag(f"{FINAL}/{metric}")


def existing_version(root: Path) -> str | None:
    """The TensorBoard run already under ``<run dir>/tensorboard``: ``""`` when events lie in it directly (runs
    from before run names), else the sub-directory with the newest events; None when there are none."""
    if not root.is_dir():
        return None
    if any(root.glob(TENSORBOARD_EVENTS)):
        return ""
    newest = [(max(f.stat().st_mtime for f in d.glob(TENSORBOARD_EVENTS)), d.name)
              for d in root.iterdir() if d.is_dir() and any(d.glob(TENSORBOARD_EVENTS))]
    return max(newest)[1] if newest else None


class RunTensorBoardLogger(TensorBoardLogger):
    """``TensorBoardLogger`` writing to ``<save_dir>/<name>/<version>`` with ``version`` the run's name
    (``${tensorboard_run:}`` in ``conf/logger/tensorboard.yaml``), TensorBoard tag names, and the HParams table."""

    def __init__(self, save_dir: str, name: str = TENSORBOARD, version: str | None = None, **kwargs: Any) -> None:
        existing = existing_version(Path(save_dir) / name)
        super().__init__(save_dir, name=name, version=existing if existing is not None else version, **kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics({tensorboard_tag(k): v for k, v in metrics.items()}, step)

    @property
    def trial_id(self) -> str:
        """The run's HParams row name: its name, then its run dir's (a sweep job's number, a run's time)."""
        return f"{self.version} ({Path(self.save_dir).name})" if self.version else Path(self.save_dir).name

    @rank_zero_only
    def log_hparams_table(self, hparams: Mapping[str, Any], metrics: Mapping[str, float],
                          differs: Collection[str] = (), step: int | None = None) -> None:
        """One HParams session for this run.

        ``hparams`` in column order; the keys in ``differs`` (the sweep's swept keys) are marked as varying, and
        TensorBoard orders columns by (varying first, name) and shows the first five. ``metrics`` (final values,
        in column order; TensorBoard shows the first five) are written as scalars :func:`final_tag` and declared
        as the only metric columns, each titled by its plain name. The table's "Trial ID" reads
        ``<run name> (<run dir name>)`` (``activation=relu,seed=0 (3)``) rather than the path
        ``3/tensorboard/activation=rel...`` its narrow column would cut.
        """
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        self.hparams.update(hparams)  # Lightning saves them as hparams.yaml next to the events
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time(), group_name=self.trial_id)
        infos = []
        for name, value in hparams.items():
            if isinstance(value, bool):
                start.hparams[name].bool_value, kind = value, api_pb2.DATA_TYPE_BOOL
            elif isinstance(value, (int, float)):
                start.hparams[name].number_value, kind = float(value), api_pb2.DATA_TYPE_FLOAT64
            else:
                start.hparams[name].string_value, kind = str(value), api_pb2.DATA_TYPE_STRING
            infos.append(api_pb2.HParamInfo(name=name, type=kind, differs=name in differs))
        columns = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=final_tag(k)), display_name=k) for k in metrics]
        writer = self.experiment
        for key, value in metrics.items():
            writer.add_scalar(final_tag(key), value, step)
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
        for tag, data in (
            (metadata.EXPERIMENT_TAG,
             plugin_data_pb2.HParamsPluginData(experiment=api_pb2.Experiment(hparam_infos=infos,
                                                                              metric_infos=columns))),
            (metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            (metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
        ):
            summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])
            writer._get_file_writer().add_summary(summary, step)
        writer.flush()
