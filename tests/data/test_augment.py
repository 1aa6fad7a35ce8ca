"""The ``augment`` group: every option keeps shapes and stays in range, the same (seed, epoch, batch) gives the same
batch, masks move with their images, and only training batches are touched. (Exact resume with ``crop_flip``:
tests/test_resume.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from experiments.config import compose, group_options
from experiments.data.augment import BatchAugment
from experiments.errors import ConfigError
from experiments.validation import validate

N, C, S = 32, 3, 12


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, C, S, S, generator=gen), torch.randint(0, 5, (N,), generator=gen)


def option(name: str, *overrides: str) -> BatchAugment:
    return instantiate(compose([f"augment={name}", *overrides]).augment)


def placements(image: torch.Tensor, source: torch.Tensor, pad: int) -> set[tuple[int, int, bool]]:
    """Every (row offset, column offset, flipped) at which ``image`` is a crop of zero-padded ``source``."""
    padded = torch.nn.functional.pad(source, (pad,) * 4)
    size = source.shape[-1]
    found = set()
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[..., dy:dy + size, dx:dx + size]
            found |= {(dy, dx, flipped) for flipped in (False, True)
                      if torch.equal(crop.flip(-1) if flipped else crop, image)}
    return found


def test_the_group_offers_geometric_and_photometric_options() -> None:
    assert {"none", "flip", "crop_flip", "jitter", "noise"} <= set(group_options("augment"))
    assert compose([]).hydra.runtime.choices.augment == "none"
    assert not option("none").active
    assert option("crop_flip").pad == 4 and option("crop_flip").flip == 0.5  # He et al. 2016


@pytest.mark.parametrize("name", group_options("augment"))
def test_every_option_keeps_shapes_dtypes_and_labels(name: str) -> None:
    x, y = batch()
    out_x, out_y = option(name)((x, y), epoch=0, batch_idx=0)
    assert out_x.shape == x.shape and out_x.dtype == x.dtype and torch.isfinite(out_x).all()
    assert torch.equal(out_y, y)  # a label is a label: no transform changes it
    assert torch.equal(out_x, x) == (name == "none")


def test_flip_mirrors_about_half_of_the_images_and_nothing_else() -> None:
    x, y = batch()
    out, _ = option("flip")((x, y), epoch=0, batch_idx=0)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 8 <= sum(flipped) <= 24  # p = 0.5 of 32


def test_crop_flip_is_a_crop_of_the_zero_padded_image_at_offsets_up_to_twice_the_pad() -> None:
    x, y = batch()
    out, _ = option("crop_flip", "augment.pad=2")((x, y), epoch=0, batch_idx=0)
    offsets = set()
    for image, source in zip(out, x, strict=True):
        found = placements(image, source, pad=2)
        assert found, "every output image is a (flipped) crop of its padded input"
        offsets |= {(dy, dx) for dy, dx, _ in found}
    assert len(offsets) > 5  # the offsets vary over the batch


def test_colour_jitter_and_noise_follow_their_formulas() -> None:
    x, y = batch()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    shift = BatchAugment(brightness=0.2)((x, y), 0, 0)[0] - x  # one offset per image in [-0.2, 0.2]
    per_image = shift.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    assert per_image.abs().max() <= 0.2 and per_image[:, 0].std() > 0.05

    scaled = BatchAugment(contrast=0.3)((x, y), 0, 0)[0]  # around the image's mean by a factor in [0.7, 1.3]
    factor = ((scaled - mean) / (x - mean)).flatten(1)
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), atol=1e-3)
    assert factor.min() >= 0.7 - 1e-4 and factor.max() <= 1.3 + 1e-4
    assert torch.allclose(scaled.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)

    saturated = BatchAugment(saturation=0.5)((x, y), 0, 0)[0]  # grey level kept, colour scaled
    assert torch.allclose(saturated.mean(dim=1), x.mean(dim=1), atol=1e-5)
    grey = BatchAugment(saturation=0.5)((x[:, :1], y), 0, 0)[0]
    assert torch.equal(grey, x[:, :1])  # one channel has no colour to scale

    noisy = BatchAugment(noise=0.1)((x, y), 0, 0)[0] - x
    assert abs(float(noisy.std()) - 0.1) < 0.01 and abs(float(noisy.mean())) < 0.01


def test_the_same_seed_epoch_and_batch_give_the_same_batch_and_any_other_key_another() -> None:
    x, y = batch()
    augment = option("crop_flip")
    first = augment((x, y), epoch=3, batch_idx=5)[0]
    assert torch.equal(first, augment((x.clone(), y), epoch=3, batch_idx=5)[0])
    assert torch.equal(first, option("crop_flip")((x, y), epoch=3, batch_idx=5)[0])  # a fresh object, e.g. resumed
    for other in (augment((x, y), epoch=3, batch_idx=6), augment((x, y), epoch=4, batch_idx=5),
                  option("crop_flip", "seed=1")((x, y), epoch=3, batch_idx=5),
                  augment((x, y), epoch=3, batch_idx=5, rank=1)):
        assert not torch.equal(first, other[0])
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(first, augment((x, y), epoch=3, batch_idx=5)[0])


@pytest.mark.parametrize("name", ["flip", "crop_flip"])
def test_a_mask_gets_its_images_crop_and_flip_and_padding_gets_the_ignore_index(name: str) -> None:
    """Channel 0 of each image is its mask: wherever the mask is labelled the two still agree after the transform,
    and the padding is 0 in the image and ignore_index (255) in the mask."""
    gen = torch.Generator().manual_seed(1)
    masks = torch.randint(0, 5, (N, S, S), generator=gen)
    images = torch.cat([masks[:, None].float(), torch.randn(N, 2, S, S, generator=gen)], dim=1)
    out_images, out_masks = option(name, "augment.mask_fill=255")((images, masks), epoch=0, batch_idx=0)
    assert out_masks.shape == masks.shape and out_masks.dtype == torch.long
    labelled = out_masks != 255
    assert torch.equal(out_images[:, 0][labelled], out_masks[labelled].float())
    assert (out_images[:, :, :, :][~labelled[:, None].expand_as(out_images)] == 0).all()
    assert bool((~labelled).any()) == (name == "crop_flip")
    photometric = option("jitter")((images, masks), epoch=0, batch_idx=0)
    assert torch.equal(photometric[1], masks)  # colour never touches a mask


def test_only_training_batches_are_augmented_at_lightnings_batch_index() -> None:
    x, y = batch()
    augment = option("crop_flip")
    progress = SimpleNamespace(batch_idx=6)  # Lightning: the last batch made ready; this one is 7
    trainer = SimpleNamespace(training=True, current_epoch=2, global_rank=0,
                              fit_loop=SimpleNamespace(epoch_loop=progress))
    assert torch.equal(augment.training_batch(trainer, (x, y))[0], augment((x, y), epoch=2, batch_idx=7)[0])
    trainer.training = False  # validation, test, prediction, sanity check
    assert augment.training_batch(trainer, (x, y))[0] is x
    assert augment.training_batch(None, (x, y))[0] is x


@pytest.mark.parametrize(("override", "message"), [
    ("augment.flip=1.5", "augment.flip=1.5 is invalid: it is a probability, from 0 (off) to 1"),
    ("augment.pad=-1", "augment.pad=-1 is invalid: it must be an integer >= 0"),
    ("augment.pad=32", "augment.pad=32 is invalid: a crop offset of the image size or more"),
    ("augment.noise=-0.1", "augment.noise=-0.1 is invalid: it is a std, from 0 (off)"),
])
def test_bad_augment_knobs_are_one_sentence_before_training(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose(["augment=crop_flip", override]))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
