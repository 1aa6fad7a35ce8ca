"""One data interface: stratified splits, caps that keep the class balance, folders as users keep them (already split,
lopsided, or not a classification problem at all), class names and split sizes on every data module."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from experiments.config import compose
from experiments.data.procedural import ShapesDataModule
from experiments.data.segmentation_folders import MaskFolderDataModule, VOCDataModule
from experiments.data.splits import cap, lopsided, plan_splits, stratified_split
from experiments.data.vision import ImageFolderDataModule, TorchvisionDataModule
from experiments.errors import ConfigError
from experiments.validation import validate
from tests.data.mask_trees import write_mask_folder, write_voc
from tests.data.vision_fixtures import write_cifar10, write_idx, write_image_folder


def test_every_class_lands_in_every_split_in_proportion() -> None:
    labels = [0] * 100 + [1] * 20 + [2] * 7  # a plain permutation can leave class 2 out of a 15% split
    parts = stratified_split(labels, {"val": 0.15, "test": 0.15}, seed=3)
    assert sorted(sum(parts.values(), [])) == list(range(len(labels)))  # a partition
    for split, expected in (("val", {0: 15, 1: 3, 2: 1}), ("test", {0: 15, 1: 3, 2: 1})):
        assert Counter(labels[i] for i in parts[split]) == expected, split
    assert Counter(labels[i] for i in parts["train"]) == {0: 70, 1: 14, 2: 5}
    assert parts == stratified_split(labels, {"val": 0.15, "test": 0.15}, seed=3)  # seeded
    assert parts != stratified_split(labels, {"val": 0.15, "test": 0.15}, seed=4)


def test_a_class_smaller_than_the_splits_fills_train_first() -> None:
    parts = stratified_split([0] * 10 + [1, 1], {"val": 0.2, "test": 0.2}, seed=0)
    ones = {split: sum(i >= 10 for i in indices) for split, indices in parts.items()}
    assert ones == {"train": 1, "val": 1, "test": 0}


def test_a_cap_keeps_each_class_share_and_none_means_all() -> None:
    labels = [0] * 900 + [1] * 100
    kept = cap(list(range(1000)), labels, 200, seed=0)
    assert len(kept) == 200 and Counter(labels[i] for i in kept) == {0: 180, 1: 20}
    assert cap(list(range(1000)), labels, None, seed=0) == list(range(1000))
    assert sorted(cap(list(range(1000)), labels, 5000, seed=0)) == list(range(1000))


def test_plan_says_once_when_a_cap_is_above_the_data_and_val_size_0_holds_nothing_back() -> None:
    plan = plan_splits({"train": [0, 1] * 50, "test": [0, 1] * 10}, {"val": 0.1}, {"train": 4000}, seed=0)
    assert plan.sizes() == {"train": 90, "val": 10, "test": 20}
    assert plan.notes == ["data.train_size=4000 is above the 90 images the data has for it: all 90 are used"]
    paper = plan_splits({"train": [0, 1] * 50, "test": [0, 1] * 10}, {"val": 0.1}, {"val": 0}, seed=0)
    assert paper.sizes() == {"train": 100, "val": 0, "test": 20} and not paper.notes


def test_lopsided_classes_are_named_with_their_counts() -> None:
    assert lopsided({"a": 100, "b": 90}, 3) is None
    warning = lopsided({"a": 200, "b": 10, "c": 2}, 3)
    assert warning is not None and "classes c (2) have fewer images than the 3 splits" in warning
    assert "classes b (10) are 20x or more smaller than the largest class (200 images)" in warning


def test_image_folder_is_stratified_capped_and_named(tmp_path: Path, caplog) -> None:
    root = write_image_folder(tmp_path / "digits", {"3": 40, "7": 20, "9": 20})
    caplog.set_level(logging.INFO)
    dm = ImageFolderDataModule(str(root), image_size=8, train_size=30, val_size=1000)
    dm.setup()
    assert dm.class_names == ["3", "7", "9"] and dm.data_warnings == []
    assert dm.split_sizes == {"train": 30, "val": 12, "test": 12}
    val = Counter(dm.splits["val"].tensors[1].tolist())
    assert val == {0: 6, 1: 3, 2: 3}  # every class, in proportion
    assert Counter(dm.splits["train"].tensors[1].tolist()) == {0: 15, 1: 7, 2: 8} or \
        Counter(dm.splits["train"].tensors[1].tolist()) == {0: 15, 1: 8, 2: 7}
    assert any("data.val_size=1000 is above the 12 images" in r.getMessage() for r in caplog.records)


def test_an_already_split_folder_is_used_as_it_is(tmp_path: Path) -> None:
    for split, n in (("train", 10), ("val", 3), ("test", 4)):
        write_image_folder(tmp_path / "data" / split, {"cat": n, "dog": n})
    dm = ImageFolderDataModule(str(tmp_path / "data"), image_size=8)
    dm.setup()
    assert dm.class_names == ["cat", "dog"] and dm.split_sizes == {"train": 20, "val": 6, "test": 8}
    (tmp_path / "nov").mkdir()
    for split in ("train", "test"):  # no val/: cut from train/ by val_fraction, per class
        write_image_folder(tmp_path / "nov" / split, {"cat": 20, "dog": 20})
    dm = ImageFolderDataModule(str(tmp_path / "nov"), image_size=8, val_fraction=0.1)
    dm.setup()
    assert dm.split_sizes == {"train": 36, "val": 4, "test": 40}


@pytest.mark.parametrize(("layout", "sentence"), [
    ({"only": 5}, r"it holds only one class folder \(only\), so every prediction would be right; put one sub-folder"),
    ({"a": 5, "empty": 0}, r"its class folder empty holds no images"),
])
def test_a_folder_that_is_no_classification_problem_is_one_sentence(tmp_path: Path, layout: dict, sentence: str):
    root = write_image_folder(tmp_path / "data", {k: v for k, v in layout.items() if v})
    for name in layout:
        (root / name).mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match=rf"^data.root=.* is invalid: {sentence}"):
        validate(compose(["data=image_folder", f"data.root={root}"]))


def test_a_class_of_unreadable_files_is_refused(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", {"a": 4, "b": 4})
    for path in (root / "b").iterdir():
        path.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"no image of the class b can be read \(4 files\); re-export"):
        validate(compose(["data=image_folder", f"data.root={root}"]))


def test_a_lopsided_folder_trains_with_one_warning(tmp_path: Path, caplog) -> None:
    root = write_image_folder(tmp_path / "data", {"big": 60, "tiny": 2})
    caplog.set_level(logging.WARNING)
    dm = ImageFolderDataModule(str(root), image_size=8)
    dm.setup()
    (warning,) = dm.data_warnings
    assert "classes tiny (2) have fewer images than the 3 splits" in warning
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [f"data: {warning}"]


def test_a_size_the_user_typed_beyond_the_data_is_one_sentence(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", {"a": 10, "b": 10})
    with pytest.raises(ConfigError, match=r"^data.train_size=500 is invalid: the data has 12 train images .*"
                                          r"use data.train_size<=12, or null for all of them.$"):
        validate(compose(["data=image_folder", f"data.root={root}", "data.train_size=500"]))
    validate(compose(["data=image_folder", f"data.root={root}", "data.train_size=12", "data.batch_size=4"]))
    validate(compose(["data=image_folder", f"data.root={root}", "experiment=pooling"]))  # a study's cap: a cap


def test_torchvision_sets_read_their_own_formats_with_names_and_caps(tmp_path: Path) -> None:
    write_idx("fashion_mnist", tmp_path)
    write_cifar10(tmp_path)
    fashion = TorchvisionDataModule("fashion_mnist", root=str(tmp_path), train_size=50)
    fashion.setup()
    assert fashion.class_names[0] == "T-shirt/top" and fashion.split_sizes == {"train": 50, "val": 10, "test": 40}
    cifar = TorchvisionDataModule("cifar10", root=str(tmp_path), val_size=0)
    cifar.setup()
    assert cifar.class_names[:2] == ["airplane", "automobile"]
    assert cifar.split_sizes == {"train": 150, "val": 0, "test": 40}  # He et al.'s protocol: every training image
    assert cifar.splits["val"] is cifar.splits["test"]  # the validation loop watches the test split
    assert cifar.splits["train"].tensors[0].shape[1:] == (3, 32, 32)


def test_every_data_module_names_its_classes(tmp_path: Path) -> None:
    shapes = ShapesDataModule(train_size=None, val_size=4, test_size=4, kinds=["circle", "square"])
    seg = ShapesDataModule(task="segmentation", kinds=["circle"], train_size=4, val_size=2, test_size=2)
    assert shapes.class_names == ["circle", "square"] and seg.class_names == ["background", "circle"]
    assert shapes.sizes["train"] == 8000  # null: the documented default
    masks = MaskFolderDataModule(str(write_mask_folder(tmp_path / "seg", n=12)), num_classes=3,
                                 class_names=["bg", "x", "y"], image_size=16, test_size=1)
    masks.setup()
    assert masks.class_names == ["bg", "x", "y"] and masks.split_sizes["test"] == 1
    voc = VOCDataModule(str(write_voc(tmp_path / "voc")), image_size=16, num_workers=0)
    voc.setup()
    assert voc.class_names[:2] == ["background", "aeroplane"] and voc.split_sizes["test"] == 6


def test_a_key_an_option_does_not_take_is_refused_in_every_group() -> None:
    cases = {
        "+data.val_fraction=0.2": "data.val_fraction=0.2 is invalid: data=shapes takes no key val_fraction (given on "
                                  "the command line); it takes ",
        "+optimizer.dampening=0.1": "optimizer.dampening=0.1 is invalid: optimizer=adamw takes no key dampening",
        "+scheduler.gamma=0.5": "scheduler.gamma=0.5 is invalid: scheduler=onecycle takes no key gamma",
        "+model.depth=20": "model.depth=20 is invalid: model=cnn takes no key depth",
    }
    for override, start in cases.items():
        with pytest.raises(ConfigError) as err:
            validate(compose([override]))
        assert str(err.value).startswith(start), str(err.value)
    validate(compose(["+trainer.limit_train_batches=2", "optimizer=sgd", "+optimizer.dampening=0.1"]))  # taken


def test_a_key_an_experiment_merges_into_an_option_without_it_names_the_experiment() -> None:
    """The study sets model.stages for its cnn; with model=resnet that key would be a TypeError in every job."""
    with pytest.raises(ConfigError) as err:
        validate(compose(["experiment=sigmoid_vs_relu", "model=resnet"]))
    assert str(err.value) == ("model.stages=4 is invalid: model=resnet takes no key stages (set by "
                              "experiment=sigmoid_vs_relu); it takes depth, in_channels, num_classes, residual, width; "
                              "remove model.stages, or choose an option that takes it.")


def test_mnist_idx_fixture_reads_like_the_real_files(tmp_path: Path) -> None:
    write_idx("mnist", tmp_path, n_train=100, n_test=20)
    dm = TorchvisionDataModule("mnist", root=str(tmp_path), image_size=16, channels=3)
    dm.setup()
    assert dm.split_sizes == {"train": 90, "val": 10, "test": 20}
    assert Counter(dm.splits["val"].tensors[1].tolist()) == dict.fromkeys(range(10), 1)
    assert dm.splits["train"].tensors[0].shape[1:] == (3, 16, 16)


def test_image_files_pass_through_pil_unchanged(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 1, "b": 1}, size=12)
    with Image.open(next((root / "a").iterdir())) as image:
        assert image.size == (12, 12)


def test_a_data_pickle_naming_anything_but_numpys_arrays_is_refused_before_it_runs(tmp_path: Path) -> None:
    """The CIFAR reader's unpickler admits containers and numpy arrays only: a batch file that would call
    ``os.system`` is one sentence, and the call never happens."""
    import os
    import pickle

    import numpy as np

    from experiments.errors import DataFileError
    from experiments.run.unpickle import load_data_pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    good, evil = tmp_path / "good", tmp_path / "evil"
    batch = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 0]}
    for protocol in (2, 5):
        good.write_bytes(pickle.dumps(batch, protocol=protocol))
        loaded = load_data_pickle(good)
        assert loaded["labels"] == [1, 0] and np.array_equal(loaded["data"], batch["data"])
    evil.write_bytes(pickle.dumps({"data": Payload(), "labels": []}))
    with pytest.raises(DataFileError, match=r"is invalid: unpickling it would call code other than numpy's .*system"):
        load_data_pickle(evil)
    assert not (tmp_path / "ran").exists()
    (tmp_path / "cut").write_bytes(pickle.dumps(batch)[:10])
    with pytest.raises(DataFileError, match="it is not a readable pickle"):
        load_data_pickle(tmp_path / "cut")
