"""The ``augment`` group: random transforms of whole training batches, on the device the model trains on.

Why whole batches as tensor ops: a per-sample Python transform (torchvision's ``RandomCrop`` in a
``Dataset``) costs more than a small model's step and keeps the GPU waiting; here every transform is a few
indexing and arithmetic ops over the batch, wherever it lives, and whatever loader produced it (in-memory
indexing, disk streaming, batches already on the GPU). It runs in the data module's
``on_after_batch_transfer`` hook, on training batches only.

Why randomness from (seed, epoch, batch): the draws of batch ``b`` of epoch ``e`` come from a generator
seeded with ``(seed, e, b, rank)`` alone, never from the global RNG, so a run interrupted and resumed in
mid-epoch augments every later batch exactly as the uninterrupted run did (bit-identical, see
``tests/test_resume.py``). The same key gives the same batch on the same kind of device; CPU and CUDA
generators produce different streams.

The options (``conf/augment/``) set these knobs; 0 switches a transform off:

* ``pad``: zero-pad by ``pad`` pixels on every side, then crop back to the original size at a random offset
  (He et al. 2016 trained their CIFAR ResNets with ``pad=4`` and flips);
* ``flip``: probability of a horizontal flip per image;
* ``brightness``, ``contrast``, ``saturation``: colour jitter of the *standardised* images, per image: add
  U(-b, b) (in training-set standard deviations), scale around the image's mean by U(1-c, 1+c), scale the
  pixels' departure from their grey level by U(1-s, 1+s) (RGB only);
* ``noise``: add Gaussian noise of this standard deviation (standardised units) to every pixel.

Geometric transforms move a segmentation mask with its image (the same offset and flip); padded mask pixels
get ``mask_fill``, the data's ``ignore_index``, so that no loss or metric counts them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """A generator seed for one batch; tuple hashing of ints is stable across processes and runs."""
    return hash((int(seed), int(epoch), int(batch), int(rank))) & 0x7FFF_FFFF_FFFF_FFFF


class BatchAugment:
    """Augment ``(images, targets)`` batches; the targets are transformed too when they are per-pixel masks."""

    def __init__(self, pad: int = 0, flip: float = 0.0, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, noise: float = 0.0, seed: int = 0, mask_fill: int = 0) -> None:
        self.pad, self.flip = int(pad), float(flip)
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.noise = float(noise)
        self.seed, self.mask_fill = int(seed), int(mask_fill)

    @property
    def active(self) -> bool:
        return any((self.pad, self.flip, self.brightness, self.contrast, self.saturation, self.noise))

    def __repr__(self) -> str:
        knobs = ("pad", "flip", "brightness", "contrast", "saturation", "noise")
        return f"BatchAugment({', '.join(f'{k}={getattr(self, k)}' for k in knobs if getattr(self, k))})"

    def training_batch(self, trainer: Any, batch: Any) -> Any:
        """The data module's ``on_after_batch_transfer``: training batches only, keyed by Lightning's position.

        Lightning counts a batch as ready only after this hook has run, so the batch being transferred is
        ``batch_idx + 1``, the index ``training_step`` then receives (and the one a resumed run restores)."""
        if not self.active or trainer is None or not trainer.training:
            return batch
        index = trainer.fit_loop.epoch_loop.batch_idx + 1
        return self(batch, epoch=trainer.current_epoch, batch_idx=index, rank=trainer.global_rank)

    def __call__(self, batch: Any, epoch: int, batch_idx: int, rank: int = 0) -> Any:
        images, *rest = batch
        generator = torch.Generator(device=images.device)
        generator.manual_seed(batch_seed(self.seed, epoch, batch_idx, rank))
        targets = rest[0] if rest else None
        masks = targets if _is_mask(targets, images) else None
        images, masks = self.geometric(images, masks, generator)
        images = self.photometric(images, generator)
        if masks is not None:
            rest[0] = masks
        return (images, *rest) if isinstance(batch, tuple) else [images, *rest]

    def geometric(self, images: torch.Tensor, masks: torch.Tensor | None,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random crop of the padded batch, then horizontal flip; a mask gets the same offset and flip."""
        n, _, height, width = images.shape
        device = images.device
        if self.pad > 0:
            offsets = torch.randint(0, 2 * self.pad + 1, (2, n), generator=generator, device=device)
            rows = offsets[0, :, None] + torch.arange(height, device=device)  # (n, H): padded rows each image keeps
            cols = offsets[1, :, None] + torch.arange(width, device=device)
            at = (torch.arange(n, device=device)[:, None, None], rows[:, :, None], cols[:, None, :])
            padded = F.pad(images, (self.pad,) * 4)
            # advanced indices around a slice put the indexed dims first: (n, H, W, C) -> (n, C, H, W)
            images = padded[at[0], :, at[1], at[2]].permute(0, 3, 1, 2).contiguous()
            if masks is not None:
                masks = F.pad(masks, (self.pad,) * 4, value=self.mask_fill)[at]
        if self.flip > 0:
            flipped = torch.rand(n, generator=generator, device=device) < self.flip
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
            if masks is not None:
                masks = torch.where(flipped[:, None, None], masks.flip(-1), masks)
        return images, masks

    def photometric(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Colour jitter per image, then pixel noise; images only."""
        n = images.shape[0]

        def uniform(spread: float) -> torch.Tensor:  # U(-spread, spread) per image, broadcast over (C, H, W)
            u = torch.rand(n, generator=generator, device=images.device, dtype=torch.float32) * 2 - 1
            return (u * spread).to(images.dtype).view(n, 1, 1, 1)

        if self.brightness > 0:
            images = images + uniform(self.brightness)
        if self.contrast > 0:
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = mean + (images - mean) * (1 + uniform(self.contrast))
        if self.saturation > 0:
            factor = 1 + uniform(self.saturation)
            if images.shape[1] == 3:
                grey = images.mean(dim=1, keepdim=True)
                images = grey + (images - grey) * factor
        if self.noise > 0:
            noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=torch.float32)
            images = images + (self.noise * noise).to(images.dtype)
        return images


def _is_mask(targets: Any, images: torch.Tensor) -> bool:
    """Per-pixel integer targets of the images' size: a segmentation mask, which moves with its image."""
    return (isinstance(targets, torch.Tensor) and targets.dim() == 3 and not targets.is_floating_point()
            and targets.shape[-2:] == images.shape[-2:])
