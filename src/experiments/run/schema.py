"""What ``<run dir>/metrics.json`` holds: every field, what it means and when it is written, and the statuses.

Declared once, here, and read by everyone who touches the file: :class:`~experiments.run.record.RunRecord` (the
one writer) refuses a field that is not declared, the report's reader (:mod:`experiments.reporting.runs`) reads
fields through :func:`read`, which refuses an undeclared name, and the README's table of fields is this module's
:func:`markdown_table` (``tests/test_record_schema.py`` compares them; ``python -m experiments.run.schema`` prints
it). Adding a field to the record is one entry in :class:`MetricsJson`; nothing else defines one.

Stdlib only: the report, the sweep-status callback and validation read it without torch or Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

#: every status a record can hold, and what it means; a run goes ``running`` -> one of the others
STATUSES: dict[str, str] = {
    "running": "under way (or its process died without a word: a kill, a power cut)",
    "completed": "fitted, tested and recorded",
    "failed": "stopped by an error: `error` is its one sentence (a config mistake, divergence, a bad file, a crash)",
    "interrupted": "stopped by SIGINT/SIGTERM at a batch end; `checkpoint` is where `resume=true` continues",
    "pruned": "stopped early by a hyper-parameter search (its validation metric was hopeless next to other trials'); "
              "not a failure",
}
#: statuses after which a run has nothing left to do: ``resume=true`` skips it, a sweep does not count it as failed
FINISHED = ("completed", "pruned")
#: the splits a metric name starts with (``val/acc``); the record's ``metrics`` keys, and history's columns
METRIC_SPLITS = ("train", "val", "test")
METRIC_PREFIXES = tuple(f"{split}/" for split in METRIC_SPLITS)

#: when a field is written (the README's column): the record's moments, then the callbacks' summaries
WHEN = ("start", "resume", "training", "end", "summary")


def _field(meaning: str, when: str, default: Any = None) -> Any:
    assert when in WHEN, when
    return field(default=default, metadata={"meaning": meaning, "when": when})


@dataclass
class MetricsJson:
    """The fields of ``metrics.json``. Any field may be absent (a run that failed before training has only the
    ``start`` ones, and files written by older versions lack the newer ones); readers must not assume a field."""

    # -- start: written when the record opens, before validation, so even a config mistake leaves these
    status: str = _field("one of the statuses (see the list above)", "start", "running")
    error: str | None = _field("the one-sentence reason of a failed, interrupted or pruned run; null otherwise",
                               "start")
    task: str | None = _field("classification, segmentation or reconstruction", "start")
    choices: dict[str, str] | None = _field("the option of every recorded config group (model, activation, ...)",
                                            "start")
    overrides: list[str] | None = _field("the command-line overrides that define the run (not resume=/ckpt_path=/"
                                         "tags=/print_config=)", "start")
    seed: int | None = _field("the run's seed", "start")
    run_dir: str | None = _field("the run directory", "start")
    tags: list[str] | None = _field("the run's tags=[...]", "start")
    debug: str | None = _field("what makes it a debug run (debug=fdr, trainer.fast_dev_run...), else null; "
                               "the report leaves debug runs out", "start")
    # -- resume
    resumed_from: str | None = _field("the checkpoint this invocation continued from (resume=true, ckpt_path=)",
                                      "resume")
    resumes: int | None = _field("how many times the run was continued", "resume")
    # -- training: written when fitting starts
    params: int | None = _field("the network's parameter count", "training")
    world_size: int | None = _field("processes training together (DDP), 1 otherwise", "training")
    provenance: dict[str, Any] | None = _field("versions of Python, torch, Lightning, torchvision and this "
                                               "project; the git commit and whether the checkout was dirty",
                                               "training")
    zoo: dict[str, Any] | None = _field("model=torchvision|timm: the architecture and which modules the groups "
                                        "replaced", "training")
    unused_choices: dict[str, str] | None = _field("group -> why its choice changes nothing for this model "
                                                   "(model=cnn upsampling=transposed: no decoder)", "training")
    class_names: list[str] | None = _field("the data's class names, in label order", "training")
    split_sizes: dict[str, int] | None = _field("images in the train, val and test splits", "training")
    data_warnings: list[str] | None = _field("what the data module noticed while setting up, one sentence each",
                                             "training")
    search: dict[str, Any] | None = _field("a search's trial: study name, trial number, its parameters",
                                           "training")
    # -- end: written when the run ends
    metrics: dict[str, float | None] | None = _field("the final train/, val/ and test/ values (the test ones on "
                                                     "the best checkpoint; val/best_<metric>: the best epoch's "
                                                     "value; null: not finite)", "end")
    wall_time_s: float | None = _field("seconds of training, every resumed invocation included", "end")
    epochs: int | None = _field("epochs trained", "end")
    best_checkpoint: str | None = _field("the checkpoint that was tested (best.ckpt; averaged.ckpt with ema/swa)",
                                         "end")
    averaged: str | None = _field("ema or swa when the tested weights are an average, else null", "end")
    checkpoint: str | None = _field("interrupted, or a bad data file: the checkpoint to continue from", "end")
    data_stats: dict[str, list[float]] | None = _field("the training split's per-channel mean and std (evaluate "
                                                       "--predict normalises new images with them)", "end")
    encoder_from: str | None = _field("the run dir whose encoder this run started from (encoder_from=, or its "
                                      "pretrain/ run)", "end")
    encoder_checkpoint: str | None = _field("the checkpoint that encoder was read from", "end")
    encoder_tensors: int | None = _field("how many encoder tensors were loaded", "end")
    per_class: dict[str, dict[str, float]] | None = _field("test metric -> {class name: value}", "end")
    confusion_matrix: list[list[int]] | None = _field("test-split confusion matrix, rows true class, columns "
                                                      "predicted, in class_names order", "end")
    test_count: int | None = _field("test images the test metrics were measured on (all ranks together); the "
                                    "report's per-run Wilson interval of test accuracy is taken from it", "end")
    # -- summary: what callbacks contribute (their run_summary()), at the end however the run ends
    history: dict[str, list[Any]] | None = _field("per-epoch curves: epoch, step and every train/ and val/ metric",
                                                  "summary")
    speed: dict[str, Any] | None = _field("threads, packed jobs, compile, channels_last, precision; where the data "
                                          "were served from; compiled and eager calls", "summary")
    vanishing_ratio: float | None = _field("gradient norm of the first layer over the last's, at initialisation",
                                           "summary")
    gradient_flow: dict[str, Any] | None = _field("per-layer gradient norms (and gradient/weight ratios) at "
                                                  "initialisation", "summary")
    activation_stats: dict[str, Any] | None = _field("per-layer activation statistics at initialisation",
                                                     "summary")
    flops: float | None = _field("FLOPs per sample (the layer table)", "summary")
    receptive_field: float | None = _field("receptive field of the last feature map, in input pixels", "summary")
    overfitting: dict[str, list[Any]] | None = _field("per-epoch train/val gaps of the overfitting diagnostic",
                                                      "summary")
    diverged: dict[str, Any] | None = _field("where the divergence guard stopped the run (step, layer, value)",
                                             "summary")
    sharpness: dict[str, list[float]] | None = _field("the Hessian's top eigenvalue of the training loss during "
                                                      "training (diagnostics sharpness): step, top_eig, lr",
                                                      "summary")


#: the declared fields, in the order above
FIELDS = tuple(fields(MetricsJson))
NAMES = frozenset(f.name for f in FIELDS)


class UnknownField(KeyError):
    """A field that :class:`MetricsJson` does not declare: a programming mistake, caught by the tests."""

    def __init__(self, name: str) -> None:
        super().__init__(f"metrics.json has no field {name!r}: declare it in experiments/run/schema.py (MetricsJson) "
                         "with its meaning")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


def check(record: Mapping[str, Any]) -> None:
    """Raise :class:`UnknownField` for the first key of ``record`` that is not a declared field."""
    for name in record:
        if name not in NAMES:
            raise UnknownField(name)
    status = record.get("status")
    if status is not None and status not in STATUSES:
        raise ValueError(f"metrics.json status {status!r} is not one of {', '.join(STATUSES)}")


def check_metrics(metrics: Mapping[str, Any]) -> None:
    """Raise ValueError unless every name in ``metrics`` is ``<split>/<name>`` with a split of :data:`METRIC_SPLITS`:
    the report groups metrics by that prefix."""
    for name in metrics:
        if not str(name).startswith(METRIC_PREFIXES):
            splits = ", ".join(METRIC_SPLITS)
            raise ValueError(f"metric {name!r} is not named <split>/<name> with a split among {splits}")


def read(record: Mapping[str, Any], name: str) -> Any:
    """``record[name]`` or None when absent; ``name`` must be a declared field (a reader cannot invent one)."""
    if name not in NAMES:
        raise UnknownField(name)
    return record.get(name)


def initial() -> dict[str, Any]:
    """The defaults of the ``start`` fields: the record of a run that has just begun."""
    return {f.name: f.default for f in FIELDS if f.metadata["when"] == "start" and f.default is not MISSING}


def markdown_table() -> str:
    """The README's list of statuses and table of fields, from the declaration above."""
    lines = ["| status | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in STATUSES.items()]
    lines += ["", "| field | type | written | meaning |", "|---|---|---|---|"]
    for f in FIELDS:
        kind = str(f.type).removesuffix(" | None")
        lines.append(f"| `{f.name}` | `{kind}` | {f.metadata['when']} | {f.metadata['meaning']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
