"""``ignore_index`` (VOC's 255) is honoured by every segmentation loss and by pixel accuracy and mean IoU: each equals
its hand computation over the labelled pixels alone, and the ignored pixels get no gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from experiments.config import compose
from experiments.tasks.segmentation import SegmentationTask

IGNORE, C = 255, 3


def scores_and_masks() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, C, 6, 6, generator=gen)
    target = torch.randint(0, C, (2, 6, 6), generator=gen)
    target[torch.rand(target.shape, generator=gen) < 0.3] = IGNORE
    return logits, target


def labelled_only(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled pixels as one (1, C, K) image and its (1, K) target: what the loss must see."""
    keep = target != IGNORE
    return logits.movedim(1, -1)[keep].T[None], target[keep][None]


@pytest.mark.parametrize("name", ["cross_entropy", "mse", "focal", "dice"])
def test_every_segmentation_loss_counts_the_labelled_pixels_only(name: str) -> None:
    cfg = compose(["model=fcn", "data=mask_folder", "data.num_classes=3", f"loss={name}"])
    assert cfg.loss.ignore_index == IGNORE  # the loss group follows data.ignore_index
    loss = instantiate(cfg.loss)
    logits, target = scores_and_masks()
    logits.requires_grad_(True)
    value = loss(logits, target)
    assert value.item() == pytest.approx(loss(*labelled_only(logits.detach(), target)).item(), rel=1e-5)
    value.backward()
    assert (logits.grad.movedim(1, -1)[target == IGNORE] == 0).all()  # ignored pixels teach nothing
    assert (logits.grad.movedim(1, -1)[target != IGNORE] != 0).any()


def test_cross_entropy_with_ignored_pixels_is_the_mean_negative_log_likelihood_of_the_others() -> None:
    loss = instantiate(compose(["model=fcn", "data=mask_folder", "data.num_classes=3"]).loss)
    logits, target = scores_and_masks()
    keep = target != IGNORE
    log_p = F.log_softmax(logits, dim=1).movedim(1, -1)[keep]
    by_hand = -log_p.gather(1, target[keep][:, None]).mean()
    assert loss(logits, target).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_classification_losses_ignore_nothing() -> None:
    assert compose([]).loss.ignore_index == -100  # PyTorch's "none": no class label is ever -100


def test_pixel_accuracy_and_mean_iou_leave_ignored_pixels_out() -> None:
    task = SegmentationTask(nn.Identity(), nn.CrossEntropyLoss(), torch.optim.SGD, num_classes=C, ignore_index=IGNORE)
    logits, target = scores_and_masks()
    task.val_metrics.update(logits, target)
    task.test_iou.update(logits, target)
    metrics = {k: v.item() for k, v in task.val_metrics.compute().items()}

    keep = target != IGNORE
    pred, truth = logits.argmax(dim=1)[keep], target[keep]
    assert set(truth.tolist()) == set(pred.tolist()) == set(range(C))  # every class present: no 0/0 IoU
    ious = [((pred == c) & (truth == c)).sum().item() / ((pred == c) | (truth == c)).sum().item() for c in range(C)]
    assert metrics["val/pixel_acc"] == pytest.approx((pred == truth).float().mean().item(), rel=1e-6)
    assert metrics["val/miou"] == pytest.approx(sum(ious) / C, rel=1e-6)
    assert task.test_iou.compute().tolist() == pytest.approx(ious, rel=1e-6)
