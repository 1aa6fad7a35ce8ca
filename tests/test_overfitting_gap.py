"""The overfitting diagnostic measures the train side in eval mode, so its gap compares like with like.

In-process and fast: a tiny classification task with dropout and batch norm, a stand-in trainer holding the
data module's split and Lightning's epoch metrics; no training loop.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from experiments.diagnostics.overfitting import (
    EVAL_PREFIX,
    OverfittingGap,
    eval_mode_metrics,
    supervised,
    train_val_gaps,
)
from experiments.tasks.classification import ClassificationTask
from experiments.tasks.losses import CrossEntropy


def _task(seed: int = 0) -> ClassificationTask:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(16, 3))
    return ClassificationTask(net, CrossEntropy(), lambda params: torch.optim.SGD(params, lr=0.1), num_classes=3)


def _split(n: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 2, 2, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def test_gaps_are_signed_better_on_train_and_can_take_the_eval_mode_side():
    logged = {"train/acc": 0.9, "train/loss": 0.2, "val/acc": 0.6, "val/loss": 0.9, "train/loss_step": 5.0}
    assert train_val_gaps(logged) == pytest.approx({"gap/acc": 0.3, "gap/loss": 0.7})
    measured = {f"{EVAL_PREFIX}acc": 0.8, f"{EVAL_PREFIX}loss": 0.4}
    assert train_val_gaps(logged, measured) == pytest.approx({"gap/acc": 0.2, "gap/loss": 0.5})


def test_eval_mode_metrics_switch_off_dropout_and_restore_the_training_flag():
    task = _task()
    images, labels = _split()
    task.train()
    task.network(images)  # batch norm gets running statistics to use in eval mode
    first = eval_mode_metrics(task, images, labels, batch_size=7)
    second = eval_mode_metrics(task, images, labels, batch_size=40)
    assert task.training  # flags restored
    assert first == pytest.approx(second)  # no dropout noise, no batch statistics: batching does not matter
    task.eval()
    with torch.no_grad():
        logits = task.network(images)
    assert first[f"{EVAL_PREFIX}acc"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert first[f"{EVAL_PREFIX}loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-5)


def test_the_callback_records_eval_mode_train_metrics_and_the_gap_from_them():
    task = _task()
    images, labels = _split()
    logged: list[dict] = []
    trainer = SimpleNamespace(
        sanity_checking=False, current_epoch=0, global_step=10,
        datamodule=SimpleNamespace(splits={"train": SimpleNamespace(tensors=(images, labels))}, eval_batch_size=16),
        callback_metrics={"train/acc": torch.tensor(0.99), "val/acc": torch.tensor(0.25), "val/loss": torch.tensor(2.0),
                          "train/loss": torch.tensor(0.01)},
        loggers=[SimpleNamespace(log_metrics=lambda values, step: logged.append(dict(values)))])
    callback = OverfittingGap(train_images=24)
    callback.on_validation_epoch_end(trainer, task)
    callback.on_train_epoch_end(trainer, task)
    history = callback.run_summary()["overfitting"]
    expected = eval_mode_metrics(task, images[:24], labels[:24], 16)
    assert history["epoch"] == [0]
    assert history[f"{EVAL_PREFIX}acc"] == pytest.approx([expected[f"{EVAL_PREFIX}acc"]])
    assert history["gap/acc"] == pytest.approx([expected[f"{EVAL_PREFIX}acc"] - 0.25])  # not 0.99 − 0.25
    assert history["gap/loss"] == pytest.approx([2.0 - expected[f"{EVAL_PREFIX}loss"]])
    assert "gap/acc" in logged[0] and f"{EVAL_PREFIX}acc" in logged[0]
    off = OverfittingGap(train_images=0)  # switched off: the train-mode values, as Lightning logged them
    off.on_validation_epoch_end(trainer, task)
    off.on_train_epoch_end(trainer, task)
    assert off.run_summary()["overfitting"]["gap/acc"] == pytest.approx([0.74])
    # by default as many training images as the validation split holds: the same sampling noise on both sides
    trainer.datamodule.splits["val"] = SimpleNamespace(tensors=_split(n=11, seed=2))
    default = OverfittingGap()
    default.on_validation_epoch_end(trainer, task)
    assert default._eval_train == pytest.approx(eval_mode_metrics(task, images[:11], labels[:11], 16))


def test_a_task_with_its_own_step_is_not_measured():
    task = _task()
    assert supervised(task)

    class OwnStep(ClassificationTask):
        def _step(self, batch, split):  # e.g. the autoencoder: its targets are its inputs
            return super()._step(batch, split)

    other = OwnStep(task.network, CrossEntropy(), lambda params: torch.optim.SGD(params, lr=0.1), num_classes=3)
    assert not supervised(other)
