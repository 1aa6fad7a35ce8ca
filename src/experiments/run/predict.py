"""Files in, files out for ``python -m experiments.evaluate --predict``: read a folder of images the way the
training data looked, write class probabilities (CSV) or colour-palette mask PNGs.

Kept apart from ``evaluate.py`` so that the image conventions live in one place: an image is resized to
the run's ``data.image_size`` (bilinear; masks go back to the original size with nearest neighbour, so
that they overlay the input), converted to the run's channel count, scaled to [0, 1] and standardised
with the training split's per-channel mean/std, exactly as ``data/datamodule.standardise`` did. An
autoencoder's predictions are its reconstructions, as PNGs, with their PSNR.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from experiments.data.palette import palette

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def image_files(folder: str | Path) -> list[Path]:
    """The PNG/JPEG/BMP files directly inside ``folder``, sorted by name (the CSV's row order)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(
    paths: Sequence[Path], image_size: int, channels: int, mean: Sequence[float], std: Sequence[float],
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """``(N, C, S, S)`` standardised float images and each file's original ``(width, height)``."""
    mode = "RGB" if channels == 3 else "L"
    batch, sizes = [], []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.size)
            image = image.convert(mode)
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        batch.append(pixels.view(image_size, image_size, channels).permute(2, 0, 1))
    images = torch.stack(batch).float().div_(255.0)
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    return (images - m) / s, sizes


def write_probabilities(path: str | Path, files: Sequence[Path], probs: torch.Tensor, classes: Sequence[str]) -> Path:
    """One row per image: file, predicted class, then one probability column per class."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "prediction", *classes])
        for file, row in zip(files, probs.tolist(), strict=True):
            writer.writerow([file.name, classes[int(torch.tensor(row).argmax())], *(f"{p:.6f}" for p in row)])
    return path


def mask_image(mask: torch.Tensor, size: tuple[int, int] | None = None) -> Image.Image:
    """A palette ("P" mode) PNG-ready image of an ``(H, W)`` class-index mask, optionally resized (nearest);
    class k is coloured as in TensorBoard's sample grids (:func:`~experiments.tasks.segmentation.palette`)."""
    height, width = mask.shape
    image = Image.frombytes("P", (width, height), mask.to(torch.uint8).contiguous().numpy().tobytes())
    image.putpalette(palette(256).flatten().tolist())
    if size is not None and image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.NEAREST)
    return image


def write_masks(
    out: str | Path, files: Sequence[Path], masks: torch.Tensor, sizes: Sequence[tuple[int, int]],
    classes: Sequence[str],
) -> Path:
    """``<out>/<stem>_mask.png`` per image (class index per pixel, coloured by :func:`palette`) and a CSV of the
    fraction of each image's pixels given to each class."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "predictions.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "mask", *classes])
        for file, mask, size in zip(files, masks, sizes, strict=True):
            target = out / f"{file.stem}_mask.png"
            mask_image(mask, size).save(target)
            counts = torch.bincount(mask.flatten(), minlength=len(classes)).double()
            writer.writerow([file.name, target.name, *(f"{f:.6f}" for f in (counts / counts.sum()).tolist())])
    return table


def write_reconstructions(
    out: str | Path, files: Sequence[Path], inputs: torch.Tensor, reconstructions: torch.Tensor,
) -> Path:
    """An autoencoder's predictions: ``<out>/<stem>_reconstruction.png`` per image (at the run's image size, where
    the network saw it) and a CSV of each image's reconstruction PSNR, 10 log10(1 / MSE) on [0, 1] pixels, against
    the input as the network saw it (resized to that size). Both tensors are (N, C, S, S) pixels in [0, 1]."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "predictions.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "reconstruction", "psnr"])
        for file, seen, recon in zip(files, inputs, reconstructions, strict=True):
            target = out / f"{file.stem}_reconstruction.png"
            pixels = (recon.clamp(0, 1) * 255).round().to(torch.uint8)
            Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy()).save(target)  # (S, S, 3) RGB or (S, S) L
            mse = float((recon.clamp(0, 1) - seen).pow(2).mean())
            writer.writerow([file.name, target.name, f"{10 * math.log10(1 / max(mse, 1e-12)):.4f}"])
    return table
