"""Every ready-made study runs on every data option of its task: composed and validated by default (seconds), and one
training step each (``slow``, except one pair per task), on tiny local copies of every dataset in its own format.

Classification: shapes, image_folder, mnist, fashion_mnist, cifar10; segmentation: shapes_seg, mask_folder, voc.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import compose, conf_dir
from experiments.specs import MODELS, TASKS
from experiments.validation import validate
from tests.data.mask_trees import write_mask_folder, write_voc
from tests.data.vision_fixtures import write_cifar10, write_idx, write_image_folder

STUDIES = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
DATA = {"classification": ("shapes", "image_folder", "mnist", "fashion_mnist", "cifar10"),
        "segmentation": ("shapes_seg", "mask_folder", "voc")}
#: the pair per task that trains by default (the rest: -m slow)
FAST = {("pooling", "image_folder"), ("upsampling", "mask_folder")}
#: generated data: a few images, so a step takes a second (files on disk are capped by what they hold)
SMALL = ["data.train_size=64", "data.val_size=16", "data.test_size=16"]


def task_of(study: str) -> str:
    """The study's task, read off its file's defaults list without composing (collection stays fast): the data it
    overrides, else the model's task, else the default data's (classification). The compose test checks it."""
    chosen: dict[str, str] = {}
    for entry in OmegaConf.load(conf_dir() / "experiment" / f"{study}.yaml").get("defaults") or []:
        for key, option in (entry.items() if OmegaConf.is_dict(entry) else ()):
            chosen[str(key).removeprefix("override /")] = str(option)
    if "data" in chosen:
        return str(OmegaConf.load(conf_dir() / "data" / f"{chosen['data']}.yaml").task)
    return TASKS[MODELS[chosen["model"]].task].data or "classification" if "model" in chosen else "classification"


PAIRS = [(study, data) for study in STUDIES for data in DATA[task_of(study)]]


@pytest.fixture(scope="session")
def roots(tmp_path_factory) -> dict[str, list[str]]:
    """Each data option's overrides pointing at its tiny fixture."""
    base = tmp_path_factory.mktemp("data")
    write_idx("mnist", base)
    write_idx("fashion_mnist", base)
    write_cifar10(base)
    folder = write_image_folder(base / "digits", {str(k): 12 for k in range(4)}, size=16)
    masks = write_mask_folder(base / "masks", n=24, size=20)
    voc = write_voc(base / "voc", train=12, val=6, size=20)
    torchvision = [f"data.root={base}"]
    return {"shapes": SMALL, "shapes_seg": SMALL, "mnist": torchvision, "fashion_mnist": torchvision,
            "cifar10": torchvision, "image_folder": [f"data.root={folder}"],
            "mask_folder": [f"data.root={masks}", "data.num_classes=3", "data.num_workers=0"],
            "voc": [f"data.root={voc}", "data.num_workers=0"]}


def overrides(study: str, data: str, roots: dict[str, list[str]]) -> list[str]:
    return [f"experiment={study}", f"data={data}", *roots[data]]


@pytest.mark.parametrize(("study", "data"), PAIRS, ids=[f"{s}-{d}" for s, d in PAIRS])
def test_every_study_composes_and_validates_on_every_data_option_of_its_task(study: str, data: str, roots) -> None:
    cfg = compose(overrides(study, data, roots))
    validate(cfg)
    assert cfg.hydra.runtime.choices.data == data  # the data stays the user's choice
    assert cfg.data.task == task_of(study)
    assert cfg.data.train_size is not None  # the study's cap reached every option


def one_step(study: str, data: str, roots, tmp_path: Path) -> dict:
    from experiments.train import train

    cfg = compose([*overrides(study, data, roots), "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                   "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "trainer.accelerator=cpu",
                   "trainer.enable_progress_bar=false", "logger=[]", "diagnostics=off", "print_config=false"])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = str(tmp_path / "run")
    if OmegaConf.select(cfg, "pretrain.epochs") is not None:
        cfg.pretrain.epochs = 1
    return train(cfg)


SLOW = [pytest.param(s, d, marks=() if (s, d) in FAST else pytest.mark.slow, id=f"{s}-{d}") for s, d in PAIRS]


@pytest.mark.parametrize(("study", "data"), SLOW)
def test_every_study_trains_a_step_on_every_data_option_of_its_task(study: str, data: str, roots, tmp_path) -> None:
    record = one_step(study, data, roots, tmp_path)
    assert record["status"] == "completed"
    metric = "test/acc" if task_of(study) == "classification" else "test/miou"
    assert 0.0 <= record["metrics"][metric] <= 1.0
