"""Tests for the procedural shapes generator (`experiments.data.shapes`)."""

from __future__ import annotations

import pytest
import torch

from experiments.data.shapes import DEFAULT_KINDS, SHAPE_KINDS, ShapesSample, render_shapes

REQUIRED_KINDS = ("circle", "square", "triangle", "cross", "ring")


@pytest.fixture(scope="module")
def sample() -> ShapesSample:
    return render_shapes(240, seed=3)


@pytest.fixture(scope="module")
def multi() -> ShapesSample:
    kwargs = {"kinds": SHAPE_KINDS, "shapes_per_image": (2, 4), "min_scale": 0.2, "max_scale": 0.5}
    return render_shapes(120, 48, seed=5, **kwargs)


def test_kind_registry() -> None:
    assert set(REQUIRED_KINDS) <= set(SHAPE_KINDS)
    assert set(DEFAULT_KINDS) <= set(SHAPE_KINDS)
    assert len(set(DEFAULT_KINDS)) == len(DEFAULT_KINDS)


def test_shapes_dtypes_and_ranges(sample: ShapesSample) -> None:
    assert sample.images.shape == (240, 3, 32, 32)
    assert sample.images.dtype == torch.float32
    assert sample.labels.shape == (240,)
    assert sample.labels.dtype == torch.int64
    assert sample.masks.shape == (240, 32, 32)
    assert sample.masks.dtype == torch.int64
    assert len(sample) == 240
    assert torch.isfinite(sample.images).all()
    assert sample.images.min() >= 0.0 and sample.images.max() <= 1.0
    assert sample.labels.min() >= 0 and sample.labels.max() < len(DEFAULT_KINDS)
    # Not degenerate: images vary within and across samples.
    assert sample.images.std(dim=(1, 2, 3)).min() > 0.01
    assert sample.images.mean(dim=(1, 2, 3)).std() > 0.05


def test_empty_batch() -> None:
    s = render_shapes(0, 16)
    assert s.images.shape == (0, 3, 16, 16)
    assert s.labels.shape == (0,)
    assert s.masks.shape == (0, 16, 16)


def test_same_seed_is_bit_identical() -> None:
    a = render_shapes(64, seed=11, shapes_per_image=(1, 3))
    b = render_shapes(64, seed=11, shapes_per_image=(1, 3))
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)


def test_different_seeds_differ() -> None:
    a = render_shapes(64, seed=0)
    b = render_shapes(64, seed=1)
    assert not torch.equal(a.images, b.images)
    assert not torch.equal(a.masks, b.masks)
    assert not torch.equal(a.labels, b.labels)


def test_global_rng_untouched() -> None:
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    render_shapes(16, seed=7)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunk_size_does_not_change_output(chunk_size: int) -> None:
    kwargs = {"seed": 2, "kinds": SHAPE_KINDS, "shapes_per_image": (1, 3)}
    ref = render_shapes(60, 24, **kwargs, chunk_size=60)
    got = render_shapes(60, 24, **kwargs, chunk_size=chunk_size)
    assert torch.equal(ref.images, got.images)
    assert torch.equal(ref.labels, got.labels)
    assert torch.equal(ref.masks, got.masks)


@pytest.mark.parametrize("n", [600, 601, 605])
def test_single_shape_labels_are_balanced(n: int) -> None:
    labels = render_shapes(n, 8, seed=4, noise=0.0).labels
    counts = torch.bincount(labels, minlength=len(DEFAULT_KINDS))
    assert counts.sum() == n
    assert counts.max() - counts.min() <= 1
    # ... and shuffled, not in arange order.
    assert not torch.equal(labels, torch.arange(n) % len(DEFAULT_KINDS))


def test_single_shape_masks_match_labels(sample: ShapesSample) -> None:
    masks, labels = sample.masks, sample.labels
    target = (labels + 1).view(-1, 1, 1)
    assert ((masks == 0) | (masks == target)).all()
    area = (masks == target).sum(dim=(1, 2))
    assert (area > 0).all()
    # Every image keeps some background (shapes fit inside the image).
    assert ((masks == 0).sum(dim=(1, 2)) > 0).all()
    # Smallest default shape is a triangle of diameter 0.4 * 32 px: well over 10 pixels.
    assert area.min() >= 10


def test_mask_is_where_coverage_exceeds_half() -> None:
    # Without noise or gradient, pixel = bg + coverage * (fg - bg), so coverage can be read back from the
    # image and the mask must be exactly the set of pixels with coverage > 0.5.
    s = render_shapes(64, seed=9, kinds=SHAPE_KINDS, noise=0.0, gradient=0.0)
    for img, mask in zip(s.images, s.masks, strict=True):
        pixels = img.flatten(1)  # (C, H*W)
        bg = pixels[:, mask.flatten() == 0].median(dim=1).values  # most background pixels are exact
        fg = pixels[:, (pixels - bg[:, None]).abs().sum(0).argmax()]  # an interior pixel (coverage 1)
        direction = fg - bg
        assert direction.abs().max() >= 0.25  # default min_contrast on luminance => some channel differs
        coverage = ((pixels - bg[:, None]) * direction[:, None]).sum(0) / direction.square().sum()
        coverage = coverage.view_as(mask)
        assert coverage.min() > -1e-4 and coverage.max() < 1 + 1e-4
        decided = (coverage - 0.5).abs() > 1e-3
        assert torch.equal((coverage > 0.5)[decided], (mask > 0)[decided])


def test_luminance_contrast() -> None:
    s = render_shapes(120, channels=1, seed=8, noise=0.0, gradient=0.0, min_contrast=0.3)
    for img, mask in zip(s.images[:, 0], s.masks, strict=True):
        bg = img[mask == 0][0]
        interior = img[mask > 0].sub(bg).abs().max()
        assert interior >= 0.3 - 1e-4


def test_multi_shape_masks(multi: ShapesSample) -> None:
    masks = multi.masks
    assert masks.min() >= 0 and masks.max() <= len(SHAPE_KINDS)
    distinct = torch.stack([(masks == v).flatten(1).any(1) for v in range(1, len(SHAPE_KINDS) + 1)], dim=1)
    # Most images with 2-4 shapes show at least two different classes.
    assert (distinct.sum(1) >= 2).float().mean() > 0.7
    # Across the batch every kind appears.
    assert distinct.any(0).all()
    assert multi.labels.min() >= 0 and multi.labels.max() < len(SHAPE_KINDS)


def test_multi_shape_labels_are_first_shape() -> None:
    # The first slot is drawn from the same balanced permutation as in single-shape mode, so the labels
    # are identical to those of a single-shape batch with the same seed and n.
    single = render_shapes(90, 16, seed=12, noise=0.0)
    several = render_shapes(90, 16, seed=12, noise=0.0, shapes_per_image=(1, 3))
    assert torch.equal(single.labels, several.labels)


def test_grayscale() -> None:
    s = render_shapes(20, 16, channels=1, seed=1)
    assert s.images.shape == (20, 1, 16, 16)
    assert s.images.min() >= 0.0 and s.images.max() <= 1.0


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_every_kind_renders(kind: str) -> None:
    s = render_shapes(12, 32, seed=0, kinds=(kind,), noise=0.0)
    assert (s.labels == 0).all()
    assert ((s.masks == 0) | (s.masks == 1)).all()
    assert (s.masks == 1).sum(dim=(1, 2)).min() >= 10


def test_shapes_are_distinct_kinds() -> None:
    # Same parameters, different kind: the masks must differ (no two kinds render identically).
    masks = {k: render_shapes(8, 32, seed=6, kinds=(k,), noise=0.0).masks for k in SHAPE_KINDS}
    kinds = list(masks)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            assert not torch.equal(masks[a], masks[b]), (a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": -1}, "n must be"),
        ({"image_size": 7}, "image_size must be"),
        ({"channels": 0}, "channels must be"),
        ({"kinds": ("circle", "blob")}, r"unknown shape kind.*'blob'.*valid kinds: circle, square"),
        ({"kinds": "circle"}, "sequence of kind names"),
        ({"kinds": ()}, "must not be empty"),
        ({"kinds": ("ring", "ring")}, "duplicates"),
        ({"shapes_per_image": (0, 2)}, "shapes_per_image"),
        ({"shapes_per_image": (3, 2)}, "shapes_per_image"),
        ({"shapes_per_image": (1, 2, 3)}, "shapes_per_image"),
        ({"min_scale": 0.0}, "min_scale"),
        ({"min_scale": 0.6, "max_scale": 0.5}, "min_scale"),
        ({"max_scale": 1.5}, "max_scale"),
        ({"noise": -0.1}, "noise"),
        ({"min_contrast": 0.7}, "min_contrast"),
        ({"gradient": -1.0}, "gradient"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    args = {"n": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        render_shapes(**args)  # type: ignore[arg-type]
