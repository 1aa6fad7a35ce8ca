"""How every labelled dataset is cut into train / val / test and capped to a budget, the same way for all of them.

Torch-free (the standard library only), so validation can compute the very split sizes the data module will use
and refuse a size the user typed that the data cannot honour, before anything heavy starts.

* :func:`stratified_split` cuts each class by the split fractions, so every class is in every split in proportion
  (a plain permutation leaves a rare class out of a small validation split by chance). A class with fewer images
  than there are splits cannot be everywhere: its images go to train first, then val, then test, and
  :func:`lopsided` says so.
* :func:`cap` keeps at most ``n`` items of a split, again in proportion to the classes, so that a study's
  ``data.train_size=4000`` on a 60,000-image set keeps the class balance of the whole.

Both are seeded: the same labels, fractions and seed give the same indices on every machine.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: the three splits every data module serves, in this order
SPLITS = ("train", "val", "test")
#: a class this many times smaller than the largest one is worth a warning
LOPSIDED_RATIO = 20


def _by_class(labels: Sequence[int], indices: Sequence[int] | None = None) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(labels)) if indices is None else indices:
        groups[int(labels[i])].append(i)
    return dict(sorted(groups.items()))


def stratified_split(labels: Sequence[int], fractions: Mapping[str, float], seed: int) -> dict[str, list[int]]:
    """Indices of ``labels`` per split: each class shuffled (seeded) and cut by ``fractions`` (``{"val": 0.15,
    "test": 0.15}``; train gets the rest).

    A class holding at least one image per split gives every split with a positive fraction at least one image
    and train at least one; a smaller class fills train, then val, then test."""
    rng = random.Random(seed)
    held = [name for name in SPLITS[1:] if fractions.get(name, 0.0) > 0]
    parts: dict[str, list[int]] = {name: [] for name in SPLITS}
    for members in _by_class(labels).values():
        rng.shuffle(members)
        n = len(members)
        if n < len(held) + 1:
            counts = dict.fromkeys(held, 0)
            for name in held[: max(0, n - 1)]:
                counts[name] = 1
        else:
            counts = {name: max(1, round(n * fractions[name])) for name in held}
            while sum(counts.values()) > n - 1:  # train keeps at least one image of the class
                largest = max(counts, key=lambda k: counts[k])
                counts[largest] -= 1
        start = 0
        for name in held:
            parts[name] += members[start:start + counts[name]]
            start += counts[name]
        parts["train"] += members[start:]
    for name in SPLITS:  # classes interleaved: a split's order does not follow its classes
        parts[name].sort()
        rng.shuffle(parts[name])
    return parts


def cap(indices: Sequence[int], labels: Sequence[int], n: int | None, seed: int) -> list[int]:
    """At most ``n`` of ``indices`` (all of them for ``None`` or ``n >= len``), each class keeping its share.

    Every item gets its position within its class as a fraction (a class of 4: 1/8, 3/8, 5/8, 7/8, after a seeded
    shuffle of the class); the ``n`` smallest fractions are kept, so a class of a tenth of the split keeps a tenth
    of the cap. Ties between classes are broken by a seeded draw."""
    if n is None or n >= len(indices):
        return list(indices)
    rng = random.Random(seed)
    keyed = []
    for members in _by_class(labels, indices).values():
        rng.shuffle(members)
        keyed += [((rank + 0.5) / len(members), rng.random(), i) for rank, i in enumerate(members)]
    keyed.sort()
    kept = [i for _, _, i in keyed[:n]]
    rng.shuffle(kept)
    return kept


def class_counts(labels: Sequence[int], indices: Sequence[int] | None = None) -> dict[int, int]:
    """Items per class id (of ``indices``, or all), classes in id order."""
    return {label: len(members) for label, members in _by_class(labels, indices).items()}


def lopsided(counts: Mapping[str, int], splits: int) -> str | None:
    """One warning sentence when some classes are too small to be in every one of ``splits`` splits, or are
    :data:`LOPSIDED_RATIO` times smaller than the largest class; None when the classes are fine."""
    if not counts:
        return None
    largest = max(counts.values())
    few = {name: n for name, n in counts.items() if n < splits}
    rare = {name: n for name, n in counts.items() if n * LOPSIDED_RATIO <= largest and name not in few}
    problems = []
    if few:
        problems.append(f"{_named(few)} have fewer images than the {splits} splits, so some split lacks them")
    if rare:
        problems.append(f"{_named(rare)} are {LOPSIDED_RATIO}x or more smaller than the largest class ({largest} "
                        "images), so their accuracy rests on few images")
    return "; ".join(problems) + "; add images of these classes or remove their folders" if problems else None


def _named(counts: Mapping[str, int]) -> str:
    shown = [f"{name} ({n})" for name, n in list(counts.items())[:8]]
    more = len(counts) - len(shown)
    return "classes " + ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def cap_note(key: str, asked: int | None, available: int) -> str | None:
    """The one log line for a cap above the data: ``data.train_size=4000 is above the 700 training images: all are
    used``; None when the cap applies or there is none."""
    if asked is None or asked <= available:
        return None
    return f"data.{key}={asked} is above the {available} images the data has for it: all {available} are used"


@dataclass
class SplitPlan:
    """Which items of which part (``"all"``, or a dataset's own ``"train"``/``"val"``/``"test"``) each split serves.

    ``available``: each split's size before its cap (what a size the user typed is checked against); ``notes``: one
    line per cap above the data, for the log."""

    parts: dict[str, str]
    indices: dict[str, list[int]]
    available: dict[str, int]
    notes: list[str]

    def sizes(self) -> dict[str, int]:
        return {split: len(self.indices[split]) for split in SPLITS}


def plan_splits(parts: Mapping[str, Sequence[int]], fractions: Mapping[str, float],
                sizes: Mapping[str, int | None], seed: int) -> SplitPlan:
    """The splits of a labelled dataset, from its parts' labels (one label per item; 0 for all when there are none):

    * a part ``"all"`` (no official split) is cut by ``fractions`` (``val``, ``test``) per class;
    * else the dataset's own parts are used as they are, and a missing ``val`` or ``test`` is carved from ``train``
      by its fraction (a fraction of 0: an empty split);

    then each split keeps at most ``sizes[split]`` items in proportion to its classes (:func:`cap`); a split capped
    at 0 is not carved at all, so its share stays in train."""
    source = "all" if "all" in parts else "train"
    # a split capped at 0 holds nothing back: val_size=0 trains on every image (He et al.'s CIFAR-10 protocol)
    carve = {split: 0.0 if sizes.get(split) == 0 else float(fractions.get(split, 0.0) or 0.0) for split in SPLITS[1:]
             if source == "all" or split not in parts}
    cut = stratified_split(parts[source], carve, seed)
    owner = {split: (split if split in parts and source != "all" else source) for split in SPLITS}
    chosen = {split: (cut[split] if owner[split] == source else list(range(len(parts[split])))) for split in SPLITS}
    notes = []
    indices = {}
    for offset, split in enumerate(SPLITS):
        labels = parts[owner[split]]
        note = cap_note(f"{split}_size", sizes.get(split), len(chosen[split]))
        if note:
            notes.append(note)
        indices[split] = cap(chosen[split], labels, sizes.get(split), seed + 1 + offset)
    return SplitPlan(owner, indices, {split: len(chosen[split]) for split in SPLITS}, notes)
