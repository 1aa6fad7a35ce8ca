"""Rules of the ``model`` group: the model and the data agree on the task (group-wide), then each model's own knobs,
registered with ``models=`` so they run for those options only (the option sets come from ``specs.MODELS``).
"""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.errors import ConfigError
from experiments.specs import (
    ENCODER_MODELS,
    FCN_VARIANTS,
    MODELS,
    RECONSTRUCTION_LOSSES,
    RESNET_DEPTHS,
    ZOO_SWAPPABLE,
    model_kind,
    model_option,
    predicts,
    resnet_blocks_per_stage,
)
from experiments.validation.checks import chosen_option, is_number, listing, positive_int, require, target_of
from experiments.validation.registry import rule

#: models with a decoder (they read the upsampling group): where max-unpooling has pools to undo
_DECODER_MODELS = tuple(option for option, spec in MODELS.items() if "upsampling" in spec.groups)
#: losses of pixel regions (their sums run over every pixel of a class), for segmentation only: on classification
#: they would sum over the images of a batch (what each task takes, and why: README "Config groups", loss row)
PIXEL_REGION_LOSSES = ("DiceLoss",)
#: the standard architectures (models/zoo.py: torchvision's and timm's, their layers swapped by the groups)
_ZOO_MODELS = tuple(option for option, spec in MODELS.items() if spec.builder.startswith("experiments.models.zoo."))


@rule("model")
def _check_task(cfg: DictConfig) -> None:
    """A per-pixel model needs per-pixel masks and a per-image model needs labels; an autoencoder takes any data
    (labels unused) and a reconstruction loss, which only it takes; Dice, a loss of pixel regions, is for the
    per-pixel models only. Each task's losses and why are in the README's group table (the ``loss`` row)."""
    task = OmegaConf.select(cfg, "data.task", default="classification")
    registered = model_option(cfg)
    option = registered or model_kind(cfg).lower()
    loss_cls = target_of(cfg.get("loss")).rsplit(".", 1)[-1]
    if predicts(registered) == "reconstruction":
        require(loss_cls in RECONSTRUCTION_LOSSES, "loss", chosen_option(cfg, "loss", loss_cls),
                f"model={option} reconstructs its input image, which needs a per-pixel reconstruction loss",
                f"use {' or '.join(f'loss={name}' for name in RECONSTRUCTION_LOSSES.values())}")
        return
    others = "mse, focal, dice" if predicts(registered) == "segmentation" else "mse, focal"
    require(loss_cls not in RECONSTRUCTION_LOSSES, "loss", RECONSTRUCTION_LOSSES.get(loss_cls),
            f"a reconstruction loss compares an output image with the input, and model={option} predicts classes",
            f"use loss=cross_entropy (or {others}), or model=autoencoder to reconstruct")
    if predicts(registered) == "segmentation":
        require(task == "segmentation", "data.task", task,
                f"model={option} predicts a class for every pixel and needs per-pixel masks",
                f"use data=shapes_seg (model={option} picks it when no data= is given)")
        return
    segmenters = ' or '.join(f'model={o}' for o in MODELS if predicts(o) == 'segmentation')
    require(task != "segmentation", "data.task", task,
            f"model={option} predicts one class per image, not a labelled map",
            f"use {segmenters} for segmentation, or data=shapes for classification")
    require(loss_cls not in PIXEL_REGION_LOSSES, "loss", chosen_option(cfg, "loss", loss_cls),
            f"Dice scores the overlap of predicted and labelled pixel regions (it tracks mean IoU, the segmentation "
            f"score), and with one label per image its sums run over the batch, so model={option} would be trained "
            "on a batch-level F1 instead of each image's class",
            f"use loss=cross_entropy, mse or focal, or {segmenters} to segment with Dice")


@rule("model", models=ENCODER_MODELS)
def _check_encoder(cfg: DictConfig) -> None:
    model = cfg.model
    for key in ("stages", "convs_per_stage", "width"):
        positive_int(cfg, f"model.{key}")
    k = model.get("kernel_size", 3)
    require(isinstance(k, int) and k >= 1 and k % 2 == 1, "model.kernel_size", k,
            "'same' padding needs an odd kernel size", "use model.kernel_size=3 (or 1, 5, 7)")
    dropout = model.get("dropout", 0.0)
    require(isinstance(dropout, (int, float)) and 0 <= dropout < 1, "model.dropout", dropout,
            "dropout is a probability in [0, 1)", "use e.g. model.dropout=0.5")
    hidden = model.get("hidden", [])
    require(all(isinstance(h, int) and h >= 1 for h in hidden or []), "model.hidden", hidden,
            "hidden layer sizes must be positive integers", "use e.g. model.hidden=[128]")
    factor = cfg.pooling.get("kernel_size", 2) if cfg.pooling.get("name") != "none" else 1
    size, stages = int(cfg.data.image_size), int(model.stages)
    out = size
    for _ in range(stages):
        out //= factor
    max_stages = 0
    probe = size
    while factor > 1 and probe // factor >= 1:
        probe //= factor
        max_stages += 1
    require(out >= 1, "model.stages", stages,
            f"{stages} pooling stages shrink a {size}x{size} image below one pixel",
            f"use at most model.stages={max_stages}, a larger data.image_size, or pooling=none")


@rule("model", models=("resnet",))
def _check_resnet(cfg: DictConfig) -> None:
    depth = cfg.model.get("depth")
    require(resnet_blocks_per_stage(depth) is not None, "model.depth", depth,
            "the CIFAR ResNet has depth 6n+2", f"use model.depth={listing(map(str, RESNET_DEPTHS), 'or')}")
    positive_int(cfg, "model.width")
    pooling = cfg.pooling.get("name")
    require(pooling == "stride", "pooling", pooling,
            "ResNet down-samples with stride-2 convolutions (He et al. 2016), so pooling does not apply",
            "drop the pooling override (model=resnet selects pooling=stride)")


@rule("model", models=("fcn",))
def _check_fcn(cfg: DictConfig) -> None:
    model = cfg.model
    variant = model.get("variant", "8s")
    require(variant in FCN_VARIANTS, "model.variant", variant,
            f"FCN variants are {listing(FCN_VARIANTS)} (Long et al. 2015)", "use model.variant=8s")
    stages, skips = model.get("stages"), FCN_VARIANTS[variant]
    require(stages > skips, "model.variant", variant,
            f"FCN-{variant} fuses the scores of {skips} earlier pools, so it needs model.stages>={skips + 1}",
            f"use model.stages={skips + 1} or more, or a variant with fewer skips such as model.variant=32s")
    positive_int(cfg, "model.fc_width")
    k = model.get("fc_kernel", 3)
    require(isinstance(k, int) and k >= 1 and k % 2 == 1, "model.fc_kernel", k,
            "the convolutionalised fc6 keeps the map size only with an odd kernel",
            "use model.fc_kernel=3 (or 1, 5, 7)")


@rule("model", models=("dilated",))
def _check_dilated(cfg: DictConfig) -> None:
    model = cfg.model
    positive_int(cfg, "model.context_width")
    positive_int(cfg, "model.dilated_stages", 0)
    dilations = model.get("dilations")
    ok = isinstance(dilations, ListConfig) and len(dilations) > 0 and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dilations
    )
    require(ok, "model.dilations", dilations, "the context module needs a non-empty list of positive dilations",
            "use e.g. model.dilations=[1,1,2,4,8,16,1] (Yu & Koltun 2016)")


@rule("model", models=("autoencoder",))
def _check_autoencoder(cfg: DictConfig, prefix: str = "model") -> None:
    """The code width is a channel count (or null for none); the denoising noise is a standard deviation."""
    bottleneck = OmegaConf.select(cfg, f"{prefix}.bottleneck", default=None)
    if bottleneck is not None:
        positive_int(cfg, f"{prefix}.bottleneck")
    noise = OmegaConf.select(cfg, f"{prefix}.noise_std", default=0.0)
    require(is_number(noise) and noise >= 0, f"{prefix}.noise_std", noise,
            "it is the standard deviation of the denoising input noise, in units of the data's std",
            f"use e.g. {prefix}.noise_std=0.5, or 0 for a plain autoencoder")


@rule("model", models=_DECODER_MODELS)
def _check_unpool(cfg: DictConfig) -> None:
    """Max-unpooling puts values back where a max-pool found its maxima, so it needs those max-pools."""
    if OmegaConf.select(cfg, "upsampling.name", default=None) != "unpool":
        return
    pooling = cfg.pooling.get("name")
    require(pooling == "max", "pooling", pooling,
            "upsampling=unpool needs the argmax indices that only max pooling records",
            "use pooling=max, or another upsampling such as upsampling=bilinear")
    k = cfg.pooling.get("kernel_size", 2)
    require(isinstance(k, int) and k >= 2, "pooling.kernel_size", k,
            "a 1x1 max-pool does not down-sample, so there is nothing for upsampling=unpool to undo",
            "use pooling.kernel_size=2")


@rule("model", models=_ZOO_MODELS)
def _check_zoo(cfg: DictConfig) -> None:
    """A standard architecture (models/zoo.py): a name, groups it can keep, a local weights file, no maxout; all
    without torch. The name itself and what the architecture takes are :func:`_check_zoo_architecture`'s."""
    model, option = cfg.model, model_option(cfg)
    arch = model.get("arch")
    require(isinstance(arch, str) and bool(arch), "model.arch", arch, f"model={option} builds an architecture by "
            "name", "use e.g. model.arch=resnet18")
    keep = model.get("keep") or []
    require(isinstance(keep, (ListConfig, list)) and all(g in ZOO_SWAPPABLE for g in keep), "model.keep", keep,
            f"it lists the groups whose own layers stay, among {listing(ZOO_SWAPPABLE)}",
            "use e.g. model.keep=[activation] or model.keep=[]")
    act = OmegaConf.select(cfg, "activation.name")
    require(act != "maxout" or "activation" in keep, "activation", act, f"maxout needs k times the channels from "
            f"the layer before it, and {option} {arch} fixes those widths",
            "use another activation, or maxout with model=cnn or model=resnet")
    weights = model.get("weights")
    if weights is not None:
        from pathlib import Path

        path = Path(str(weights))
        require(path.is_file(), "model.weights", weights, f"{'it is not a file' if path.exists() else 'no such file'}"
                " (pretrained weights come from a local file only, never a download)", "point it at a state dict "
                "saved with torch.save(model.state_dict(), path), or use model.weights=null")
    if option == "timm":
        import importlib.util

        require(importlib.util.find_spec("timm") is not None, "model", option, "the timm package is not installed",
                "install it with pip install 'experiments[timm]'")


#: where each standard-architecture option's names come from, for the refusal of an unknown ``model.arch``
_ZOO_LISTS = {"torchvision": "torchvision.models.list_models(module=torchvision.models)", "timm": "timm.list_models()"}


def zoo_architectures(option: str) -> list[str]:
    """Every architecture name ``model=<option>`` builds (importing torchvision or timm, hence torch)."""
    if option == "timm":
        import timm

        return list(timm.list_models())
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


@rule("model", models=_ZOO_MODELS)
def _check_zoo_architecture(cfg: DictConfig) -> None:
    """The architecture exists and takes the run's choices, answered before the config is printed: an unknown name
    (with its close matches), an image size it cannot take, a per-channel activation on a module it applies to two
    widths, builder arguments it refuses (``models/zoo.py`` raises each as one sentence).

    Needs torch and the library, which a zoo run imports next anyway. The network is built on PyTorch's meta device
    (shapes only: no memory, no initialisation; seconds saved on VGG's 120 M parameters) and, only where that cannot
    tell (a refusal, or a library step that needs real numbers), once more on the CPU, whose answer is the one given.
    The run's own network is built later from the seeded generator, so this build changes nothing it draws."""
    import difflib

    option = model_option(cfg)
    arch = str(cfg.model.arch)
    names = zoo_architectures(option)
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=3, cutoff=0.75)
        every = _ZOO_LISTS[option]
        fix = f"use model.arch={listing(close, 'or')} ({every} lists all)" if close else \
            f"use one of {every}, e.g. model.arch=resnet18"
        raise ConfigError("model.arch", arch, f"{option} has no {'model' if option == 'timm' else 'classifier'} of "
                          "that name", fix)
    try:
        _build_zoo(cfg, "meta")
    except Exception:  # a refusal (confirmed on the CPU), or a step meta tensors cannot take (.item() in timm)
        try:
            _build_zoo(cfg, "cpu")
        except ConfigError:
            raise
        except Exception:  # not a choice the user made: the run's own build reports it as it comes
            return


def _build_zoo(cfg: DictConfig, device: str) -> None:
    """The zoo network as ``build.build_network`` makes it (the layer factories of its groups, the model's keys),
    without initialisation or weights file, on ``device``."""
    import inspect
    import warnings

    import torch
    from hydra.utils import get_class, instantiate

    factories = {"activation": "act_layer", "pooling": "pool_layer", "norm": "norm_layer"}
    node = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(node, dict)
    model_cls = get_class(str(node.pop("_target_")))
    accepted = inspect.signature(model_cls).parameters
    node["weights"] = None  # loaded after the build, by the run (run/checkpoints.py)
    parts = {param: instantiate(cfg[group]) for group, param in factories.items() if group in cfg}
    with torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library's notices (inception's init) come with the run's own build
        model_cls(**{k: v for k, v in {**node, **parts}.items() if k in accepted})
