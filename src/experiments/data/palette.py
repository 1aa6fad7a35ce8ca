"""The one colour palette of segmentation masks: TensorBoard's sample grids (``tasks/segmentation.py``) and
``evaluate --predict``'s mask PNGs (``run/predict.py``) colour class k alike.

It lives with the data, below both of its readers, because a colour per class id is a fact about the masks, not
about a task: the prediction writer reads it without reaching up into the tasks.
"""

from __future__ import annotations

import colorsys

import torch

#: black background so the shapes stand out, then tab10's well separated colours
MASK_COLOURS = (
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def palette(num_classes: int) -> torch.Tensor:
    """(C, 3) uint8 RGB, one colour per class id.

    Class k's colour does not depend on C, so a class looks the same in every run and output; classes past
    :data:`MASK_COLOURS` get golden-ratio-spaced hues, all distinct.
    """
    colours = list(MASK_COLOURS[:num_classes])
    for k in range(len(colours), num_classes):
        rgb = colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.65, 0.95)
        colours.append(tuple(round(255 * c) for c in rgb))
    return torch.tensor(colours, dtype=torch.uint8).view(-1, 3)
