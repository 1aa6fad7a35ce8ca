"""What ``python -m experiments.explain`` draws: each image's ``explain.json`` entry, figure and TensorBoard grid.

Figures are bare matplotlib ``Figure`` objects (no pyplot), like every figure of a run dir. The image is shown as the
network's input un-standardised (``x * std + mean``); Grad-CAM is laid over it (``jet``, scaled to its own maximum:
only where the map is high matters, Grad-CAM's scale is arbitrary); Integrated Gradients is drawn signed (``bwr``,
symmetric around 0: red raised the explained score above the mean image's, blue lowered it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.analysis.attribution import Maps, map_stats
from experiments.analysis.per_class import save_figure

#: how much of the overlay is the Grad-CAM colour map
ALPHA = 0.5
#: the TensorBoard grid's tiles are enlarged (nearest neighbour, by a whole factor) to at least this many pixels
TILE = 128


def _maps_entry(maps: Maps, i: int) -> dict[str, Any]:
    return {"gradcam": map_stats(maps.gradcam[i]), "ig": {**map_stats(maps.ig[i]), "delta": float(maps.delta[i])}}


def image_record(i: int, label: str, names: Sequence[str], probs: torch.Tensor, targets: torch.Tensor | None,
                 rows: Sequence[dict[str, Any]], segmentation: bool, from_test: bool) -> dict[str, Any]:
    """Image ``i``'s entry of ``explain.json``: which image, its true and predicted class (classification) or the
    explained class's pixels (segmentation), the probabilities, and each map's statistics."""
    entry: dict[str, Any] = {"file": label, **({"index": int(label.rsplit("_", 1)[1])} if from_test else {})}
    if segmentation:
        row = rows[0]
        cls, mask = row["class"], row["objective"].extra[i].bool()
        predicted = probs[i].argmax(dim=0)
        entry.update({
            "class": names[cls], "pixels": int(mask.sum()),
            "probability": float(probs[i, cls][mask].mean()) if mask.any() else None,
            "predicted_fractions": {n: float((predicted == k).float().mean()) for k, n in enumerate(names)},
            **({"true_pixels": int((targets[i] == cls).sum())} if targets is not None else {}),
            "maps": {names[cls]: _maps_entry(row["maps"], i)},
        })
        return entry
    entry.update({
        "true": names[int(targets[i])] if targets is not None else None,
        "predicted": names[int(probs[i].argmax())],
        "probabilities": {n: float(p) for n, p in zip(names, probs[i].tolist(), strict=True)},
        "maps": {row["role"]: {"class": names[int(row["classes"][i])],
                               "probability": float(probs[i, int(row["classes"][i])]), **_maps_entry(row["maps"], i)}
                 for row in rows},
    })
    return entry


def pixels(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A standardised ``(C, H, W)`` image back to ``(H, W, 3)`` values in [0, 1] (grayscale repeated)."""
    m = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
    shown = (image.detach().cpu().float() * s + m).clamp(0, 1)
    shown = shown[:1].expand(3, -1, -1) if shown.shape[0] != 3 else shown
    return shown.permute(1, 2, 0)


def coloured(values: torch.Tensor, cmap: str, signed: bool) -> torch.Tensor:
    """A map ``(H, W)`` as ``(H, W, 3)`` colours: scaled to [0, 1] by its maximum (or its largest magnitude, around
    0, when ``signed``)."""
    from matplotlib import colormaps

    values = values.detach().cpu().float()
    top = float(values.abs().max()) or 1.0
    scaled = (values / top + 1) / 2 if signed else values / top
    return torch.from_numpy(colormaps[cmap](scaled.clamp(0, 1).numpy())[..., :3]).float()


def overlay(image: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Grad-CAM's colours blended into the image, ``(H, W, 3)``."""
    return (1 - ALPHA) * image + ALPHA * coloured(cam, "jet", signed=False)


def draw(image: torch.Tensor, panels: Sequence[tuple[str, torch.Tensor, torch.Tensor, str]], name: str, title: str,
         outline: torch.Tensor | None = None) -> Any:
    """One figure: a row per explained class of (image, Grad-CAM overlay, IG map); ``panels`` holds each row's
    (class title, Grad-CAM map, IG map, IG title); ``outline`` draws the explained pixels' border (segmentation)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.4, 2.9 * len(panels)), dpi=100, layout="constrained")
    figure.suptitle(name, fontsize=10)
    axes = figure.subplots(len(panels), 3, squeeze=False)
    for row, (head, cam, ig, ig_title) in zip(axes, panels, strict=True):
        row[0].imshow(image.numpy())
        if outline is not None and outline.any() and not outline.all():
            row[0].contour(outline.float().numpy(), levels=[0.5], colors="white", linewidths=1)
        row[0].set_title(title, fontsize=9)
        row[1].imshow(overlay(image, cam).numpy())
        row[1].set_title(f"Grad-CAM: {head}", fontsize=9)
        top = float(ig.abs().max()) or 1.0
        shown = row[2].imshow(ig.numpy(), cmap="bwr", vmin=-top, vmax=top)
        figure.colorbar(shown, ax=row[2], fraction=0.046)
        row[2].set_title(ig_title, fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    return figure


def draw_all(out: Path, x: torch.Tensor, labels: Sequence[str], entries: Sequence[dict[str, Any]],
             rows: Sequence[dict[str, Any]], mean: Sequence[float], std: Sequence[float], names: Sequence[str],
             probs: torch.Tensor, segmentation: bool) -> list[Path]:
    """``<out>/<image>.png`` for every image (a duplicate row is dropped where the true class is the predicted one)."""
    paths = []
    for i, (label, entry) in enumerate(zip(labels, entries, strict=True)):
        image = pixels(x[i], mean, std)
        if segmentation:
            row = rows[0]
            p = entry["probability"]
            head = f"{entry['class']} on {entry['pixels']} px" + (f", mean p={p:.2f}" if p is not None else "")
            panels = [(head, row["maps"].gradcam[i].cpu(), row["maps"].ig[i].cpu(), "Integrated Gradients")]
            figure = draw(image, panels, label, f"{entry['class']} outlined", row["objective"].extra[i].cpu())
        else:
            seen, panels = set(), []
            for row in rows:
                cls = int(row["classes"][i])
                if cls in seen:
                    continue
                seen.add(cls)
                roles = [r["role"] for r in rows if int(r["classes"][i]) == cls]
                head = f"{' = '.join(roles)} {names[cls]} (p={float(probs[i, cls]):.2f})"
                panels.append((head, row["maps"].gradcam[i].cpu(), row["maps"].ig[i].cpu(),
                               f"Integrated Gradients: {names[cls]}"))
            truth = f"true {entry['true']}, " if entry["true"] is not None else ""
            figure = draw(image, panels, label, f"{truth}predicted {entry['predicted']}")
        paths.append(save_figure(figure, out / f"{Path(label).stem}.png"))
    return paths


def tensorboard_grid(x: torch.Tensor, maps: Maps, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(3, H', W')`` image for TensorBoard: a line per image (image, Grad-CAM overlay, IG), small images enlarged by a
    whole factor (nearest neighbour) to at least :data:`TILE` pixels, since TensorBoard shows images at their size."""
    from torchvision.utils import make_grid

    zoom = max(1, TILE // max(x.shape[-2:]))
    tiles = []
    for i in range(len(x)):
        image = pixels(x[i], mean, std)
        tiles += [image, overlay(image, maps.gradcam[i].cpu()), coloured(maps.ig[i].cpu(), "bwr", signed=True)]
    return make_grid([t.permute(2, 0, 1).repeat_interleave(zoom, 1).repeat_interleave(zoom, 2) for t in tiles],
                     nrow=3, padding=2, pad_value=1.0)
