"""Where the config tree lives, what its groups offer, and the resolvers it uses. Imports only OmegaConf (Hydra
inside ``compose``), so it is cheap.

The YAML tree sits in the repository's ``conf/``; a wheel carries a copy inside the package
(``experiments/conf``), so the same lookup serves an editable checkout and an installed package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict


def conf_dir() -> Path:
    """The ``conf/`` directory: packaged copy first, then the source checkout's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"cannot find the experiments config tree (conf/train.yaml) near {here}")


#: swappable-part groups -> the key that names the chosen option: conf/<group>/<option>.yaml sets it to <option>
CHOICE_KEYS = {"activation": "name", "pooling": "name", "norm": "name", "upsampling": "name", "init": "scheme"}


def group_options(group: str) -> tuple[str, ...]:
    """The options of a config group, sorted: its YAML files, which are the one list of them.

    Validation accepts exactly these, and each layer module's registry builds exactly these
    (``tests/test_options.py``), so a new option is one YAML file plus one registry entry.
    """
    return tuple(sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")))


def hydra_error_line(error: Exception) -> str:
    """A Hydra composition error (``activation=sigmod``) as one line: its list of valid options kept, the config
    search path dropped."""
    return " ".join(str(error).split("Config search path")[0].split())


def _length(seq: Sequence, offset: int | str = 0) -> int:
    return len(seq) + int(offset)


def project_root() -> str:
    """``${project_root:}``, the default of ``paths.root_dir``: the source checkout holding ``conf/`` and
    ``pyproject.toml``, so that ``data/`` and ``outputs/`` do not move with the directory a command starts in; for an
    installed package (its ``conf/`` inside site-packages) the current directory, as there is no checkout to use."""
    checkout = conf_dir().parent
    return str(checkout if (checkout / "pyproject.toml").is_file() else Path.cwd())


def tensorboard_run(*, _root_: DictConfig) -> str:
    """``${tensorboard_run:}``: the run's name in TensorBoard, what sets it apart (``experiments.run.naming``)."""
    from experiments.run.record import tensorboard_run_name

    return tensorboard_run_name(_root_)


def register_resolvers() -> None:
    """``${len:${.kinds}}`` and ``${len:${.kinds},1}`` (one extra class for the background); ``${project_root:}``;
    ``${tensorboard_run:}``."""
    OmegaConf.register_new_resolver("len", _length, replace=True)
    OmegaConf.register_new_resolver("project_root", project_root, replace=True)
    OmegaConf.register_new_resolver("tensorboard_run", tensorboard_run, replace=True)


register_resolvers()


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose the config as the CLI would, for tests, notebooks and the inspect/evaluate commands.

    ``run_dir`` is left to the caller (the CLI gets it from Hydra's output dir). The result carries a slim
    ``hydra`` node (``runtime.choices``, ``overrides.task``) so runs composed here record their choices too.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from experiments.validation import check_overrides  # imports this module: here, not at the top

    check_overrides(overrides)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        full = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    # Keep only what a run records from Hydra (group choices, command-line overrides), as plain values:
    # the rest of the hydra node interpolates runtime values that exist only under the CLI.
    record = OmegaConf.create({
        "runtime": {"choices": OmegaConf.to_container(full.hydra.runtime.choices)},
        "overrides": {"task": list(full.hydra.overrides.task)},
    })
    with open_dict(full):
        del full["hydra"]
        full["hydra"] = record
    return full
