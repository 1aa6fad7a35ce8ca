"""``python -m experiments.inspect [overrides] [--effective-rf] [--out DIR]``: look at a network without training it.

Prints, per layer, the output shape, parameters, FLOPs (``torch.utils.flop_counter``), cumulative
stride, dilation and theoretical receptive field (max over paths for ResNet shortcuts / FCN skips),
with totals. It takes exactly the overrides ``experiments.train`` takes, so "what would this sweep
point cost, and what does it see?" is answered before any compute is spent.

``--effective-rf`` measures the empirical receptive field (Luo et al. 2016): the gradient of the
centre unit of the last feature map with respect to the input, saved as a heat map PNG. For a
classifier the probe stops at the last spatial feature map (the logits see the whole image).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.errors import ConfigError
from experiments.validation import validate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.inspect",
        description="Layer table (shapes, params, FLOPs, stride, dilation, receptive field) of the network that "
        "`python -m experiments.train` would build with the same overrides.",
        epilog="example: python -m experiments.inspect model=resnet model.depth=20 --effective-rf",
    )
    parser.add_argument("--effective-rf", action="store_true",
                        help="measure the empirical receptive field by back-propagating from the centre output unit "
                             "and save a heat map PNG in --out")
    parser.add_argument("--out", type=Path, default=Path("outputs/inspect"),
                        help="directory for erf.png (default: outputs/inspect)")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                        help="how to print the layer table (default: text)")
    parser.add_argument("--ckpt", type=Path, default=None,
                        help="a run's checkpoint (e.g. <run>/checkpoints/best.ckpt): inspect the trained weights")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("-")]
    if unknown:
        parser.error(f"unrecognised option(s): {' '.join(unknown)} (train overrides look like key=value)")

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.config import compose

    try:
        cfg = compose(overrides)
        validate(cfg, machine=False)  # nothing trains here: trainer=gpu on a laptop may still be inspected
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as err:
        message = str(err).split("Config search path")[0]  # keep Hydra's list of valid options, on one line
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2

    import torch

    from experiments.analysis.summary import summarize
    from experiments.build import build_network
    from experiments.run.checkpoints import load_network_weights

    torch.manual_seed(int(cfg.seed))  # seeded as `experiments.train` seeds it, so repeated inspections agree
    try:  # a standard architecture's name, input size and weights file are checked as it is built (models/zoo.py)
        network = build_network(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.ckpt is not None:
        try:  # weights-only, checked against this network: a foreign or crafted file is one sentence
            load_network_weights(network, args.ckpt, key="--ckpt")
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    shape = (1, int(cfg.data.channels), int(cfg.data.image_size), int(cfg.data.image_size))
    summary = summarize(network, shape)
    if args.format == "json":
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.to_markdown() if args.format == "markdown" else summary.to_text())

    if args.effective_rf:
        print(effective_rf_report(network, shape, args.out))
    return 0


def effective_rf_report(network, shape: tuple[int, ...], out: Path) -> str:
    """Probe the spatial trunk, save ``out/erf.png``, and describe the result next to the theoretical field."""
    from experiments.analysis.receptive_field import effective_receptive_field, receptive_field, save_erf_heatmap
    from experiments.analysis.trunk import spatial_trunk

    trunk, where = spatial_trunk(network, shape)
    erf = effective_receptive_field(trunk, shape)
    try:
        theoretical = receptive_field(trunk, shape)
    except Exception as err:  # the measured field is still worth printing
        theoretical = f"unavailable ({type(err).__name__})"
    path = save_erf_heatmap(erf, Path(out) / "erf.png", title=f"Effective receptive field of {where}")
    rows = [
        ("theoretical receptive field", f"{theoretical}"),
        ("gradient support", f"{erf.extent[0]}x{erf.extent[1]} px (clipped to the {shape[2]}x{shape[3]} image)"),
        (f"{erf.mass:.0%} of gradient mass", f"{erf.effective[0]}x{erf.effective[1]} px"),
        ("Gaussian sigma (y, x)", f"{erf.sigma[0]:.2f}, {erf.sigma[1]:.2f} px"),
        ("heat map", str(path)),
    ]
    width = max(len(label) for label, _ in rows)
    title = f"Effective receptive field (probe: {where}, centre unit {tuple(erf.output_index)})"
    return "\n".join(["", title, *(f"  {label.ljust(width)} : {value}" for label, value in rows)])


if __name__ == "__main__":
    sys.exit(main())
