"""Every network the framework builds is traceable: its receptive field is a number, never "unavailable".

The sweep covers model x activation x pooling x upsampling, every option in ``conf/``, skipping exactly the
combinations ``validate`` rejects. Composing 450-odd configs with Hydra would cost far more than analysing
them, so each model and each group option is composed once and the group nodes are swapped in, which is
what a command-line ``group=option`` does; a spot check compares that with a real compose.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import math
from collections import Counter

import pytest
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.analysis.receptive_field import analyze_receptive_field
from experiments.build import build_network
from experiments.config import compose, conf_dir
from experiments.errors import ConfigError
from experiments.validation import validate

IMAGE = 32
GROUPS = ("activation", "pooling", "upsampling")
MODELS = ("cnn", "resnet", "fcn", "dilated")
#: few narrow stages: a network traces in milliseconds; FCN keeps its default 3 stages for the 8s skips
SMALL = {
    "cnn": ["model.width=4", "model.hidden=[8]"],
    "resnet": ["model.depth=8", "model.width=4"],
    "fcn": ["model.width=4", "model.convs_per_stage=1", "model.fc_width=8"],
    "dilated": ["model.width=4", "model.convs_per_stage=1", "model.context_width=4", "model.dilations=[1,2,1]"],
}
#: 9 activations x 5 poolings x 4 upsamplings x 4 models minus the invalid ones is 450 today
FLOOR = 400


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


@functools.cache
def base(model: str) -> DictConfig:
    return compose([f"model={model}", f"data.image_size={IMAGE}", *SMALL[model]])


@functools.cache
def group_node(group: str, option: str) -> DictConfig:
    """The option's file, as Hydra places it (these groups' files have no defaults list or package header)."""
    return OmegaConf.load(conf_dir() / group / f"{option}.yaml")


def combination(cfg: DictConfig, choice: dict[str, str], current: dict[str, str] | None = None) -> DictConfig:
    """``cfg`` (a model's composed config) as ``compose([..., "activation=...", ...])`` would give it: each
    group's node replaced whole, so nothing of the previous option is left. ``current`` (the options ``cfg``
    already has) saves replacing unchanged nodes, the costly part."""
    current = {} if current is None else current
    with open_dict(cfg):
        for group, option in choice.items():
            if current.get(group) != option:
                cfg[group] = group_node(group, option)
                current[group] = option
    return cfg


def takes_upsampling(cfg: DictConfig) -> bool:
    """Whether the upsampling group reaches the network (build_network passes only what the model accepts)."""
    return "upsample_layer" in inspect.signature(get_class(cfg.model._target_)).parameters


def check(cfg: DictConfig) -> str | None:
    """None if the network's receptive field is as it should be, else what is wrong."""
    network = build_network(cfg)
    shape = (1, int(cfg.data.channels), IMAGE, IMAGE)
    try:
        analysis = analyze_receptive_field(network, shape)
    except Exception as err:  # report every failing combination at once, not just the first
        return f"{type(err).__name__}: {str(err)[:200]}"
    out = analysis.output.output_shape
    if out is not None and len(out) == 4:  # a segmenter: a labelled map at the input size
        if out[-2:] != (IMAGE, IMAGE):
            return f"output {out} is not a map at the input size"
        if not (math.isfinite(analysis.rf) and analysis.rf > 1):
            return f"receptive field of the output map is {analysis.rf}"
        return None
    # a classifier: logits see the whole image; its last feature map's field is the number to show
    features = [r.rf for r in analysis.rows if not r.is_global]
    if not analysis.output.is_global or not features or not all(math.isfinite(rf) and rf > 1 for rf in features):
        return f"classifier output {analysis.rf}, feature fields {features}"
    return None


def sweep(choices_of: dict[str, list[dict[str, str]]]) -> tuple[Counter[str], int, list[str]]:
    """Validate and analyse each model's combinations: (valid ones checked per model, rejected, failures)."""
    checked: Counter[str] = Counter()
    rejected, failures = 0, []
    verdicts: dict[tuple, str | None] = {}  # classifiers ignore upsampling: one analysis per distinct network
    for model, choices in choices_of.items():
        work, current = copy.deepcopy(base(model)), {}  # one copy per model, its groups replaced as we go
        for choice in choices:
            cfg = combination(work, choice, current)
            try:
                validate(cfg)
            except ConfigError:
                rejected += 1
                continue
            values = tuple(choice[g] for g in GROUPS)
            key = (model, *values) if takes_upsampling(cfg) else (model, *values[:-1])
            if key not in verdicts:
                verdicts[key] = check(cfg)
            if verdicts[key] is not None:
                failures.append(f"model={model} " + " ".join(f"{g}={o}" for g, o in choice.items()) +
                                f": {verdicts[key]}")
            checked[model] += 1
    return checked, rejected, failures


def test_every_option_of_every_group_has_a_finite_receptive_field_in_every_model() -> None:
    """The fast sweep: each option of each group in each model, the other groups at their defaults (one factor at
    a time); the full product is the slow test below."""
    def one_at_a_time(model: str) -> list[dict[str, str]]:  # from the model's own defaults (resnet: stride pooling)
        defaults = {g: str(OmegaConf.select(base(model), f"{g}.name")) for g in GROUPS}
        return [{**defaults, group: option} for group in GROUPS for option in options(group)]

    checked, rejected, failures = sweep({model: one_at_a_time(model) for model in MODELS})
    assert not failures, f"{len(failures)} combinations without a receptive field:\n" + "\n".join(failures)
    assert all(checked[m] >= len(options("activation")) for m in MODELS), checked
    assert rejected > 0  # pooling on a ResNet: the sweep does meet invalid ones


@pytest.mark.slow
def test_every_valid_combination_has_a_finite_receptive_field() -> None:
    product = [dict(zip(GROUPS, values, strict=True)) for values in itertools.product(*(options(g) for g in GROUPS))]
    checked, rejected, failures = sweep({model: product for model in MODELS})
    assert not failures, f"{len(failures)} combinations without a receptive field:\n" + "\n".join(failures)
    assert sum(checked.values()) >= FLOOR, (checked, rejected)
    assert all(checked[m] >= len(options("activation")) for m in MODELS), checked
    assert rejected > 0  # unpool without max pooling, pooling on a ResNet: the sweep does meet invalid ones


@pytest.mark.parametrize(
    "choice",
    [
        ("resnet", "maxout", "max", "bilinear"),  # ResNet with a pooling override: invalid either way
        ("fcn", "maxout", "max", "unpool"),
        ("dilated", "prelu", "avg", "unpool"),  # unpool without max pooling: invalid either way
        ("cnn", "tanh", "none", "nearest"),
    ],
)
def test_swapping_group_nodes_is_composing(choice: tuple[str, str, str, str]) -> None:
    model, *values = choice
    swapped = combination(copy.deepcopy(base(model)), dict(zip(GROUPS, values, strict=True)))
    composed = compose([f"model={model}", f"data.image_size={IMAGE}", *SMALL[model],
                        *(f"{g}={o}" for g, o in zip(GROUPS, values, strict=True))])
    contents = [OmegaConf.to_container(cfg) for cfg in (swapped, composed)]
    for content in contents:
        del content["hydra"]  # the record of the command line's choices; nothing validates or builds from it
    assert contents[0] == contents[1]
    errors = []
    for cfg in (swapped, composed):
        try:
            validate(cfg)
            errors.append(None)
        except ConfigError as err:
            errors.append(str(err))
    assert errors[0] == errors[1]
