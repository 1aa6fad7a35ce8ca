"""``data.test_shift`` / ``data.test_noise``: the shapes test split alone moves or gets noisier, so a trained run can be
re-tested on it (``evaluate RUN data.test_shift=4``) with its training split and standardisation unchanged."""

from __future__ import annotations

import pytest
import torch

from experiments.data.procedural import ShapesDataModule, perturb
from experiments.errors import ConfigError
from experiments.validation import validate

SIZES = {"train_size": 64, "val_size": 16, "test_size": 64, "image_size": 16}


def test_a_shift_moves_each_image_and_its_mask_along_a_diagonal_with_the_edges_repeated() -> None:
    images = torch.zeros(64, 1, 16, 16)
    images[:, :, 7, 9] = 1.0
    masks = (images[:, 0] > 0).long()
    moved, moved_masks = perturb(images, masks, shift=3, noise=0.0, seed=0)
    where = moved[:, 0].flatten(1).argmax(1)
    offsets = {(int(i) // 16 - 7, int(i) % 16 - 9) for i in where}
    assert offsets == {(3, 3), (3, -3), (-3, 3), (-3, -3)}  # every diagonal drawn, by 3 pixels each way
    assert torch.equal(moved_masks.bool(), moved[:, 0] > 0)  # masks move with their images
    edge = torch.arange(16.0).expand(1, 1, 16, 16).clone()
    shifted, _ = perturb(edge, None, shift=2, noise=0.0, seed=1)
    row = shifted[0, 0, 0]
    assert row.tolist() in ([0.0, 0.0, *range(14)], [*range(2, 16), 15.0, 15.0])  # the edge column repeats


def test_the_test_split_alone_is_perturbed_so_training_data_and_standardisation_stay() -> None:
    clean = ShapesDataModule(**SIZES)
    clean.setup()
    noisy = ShapesDataModule(**SIZES, test_noise=0.1)
    noisy.setup()
    for split in ("train", "val"):
        assert torch.equal(clean.splits[split].tensors[0], noisy.splits[split].tensors[0])
    assert clean.mean == noisy.mean and clean.std == noisy.std
    std = torch.tensor(clean.std).view(1, -1, 1, 1)
    added = (noisy.splits["test"].tensors[0] - clean.splits["test"].tensors[0]) * std  # back in pixel units
    assert 0.08 < float(added.std()) < 0.105  # 0.1, a little less where [0, 1] clips it
    assert torch.equal(clean.splits["test"].tensors[1], noisy.splits["test"].tensors[1])  # same labels


@pytest.mark.parametrize(("override", "phrase"), [("data.test_shift=-1", "data.test_shift=-1 is invalid"),
                                                  ("data.test_noise=-0.1", "data.test_noise=-0.1 is invalid")])
def test_negative_perturbations_are_one_sentence(make_cfg, override: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        validate(make_cfg([override]))
