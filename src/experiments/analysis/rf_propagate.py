"""The graph walk: one :class:`~.rf_state.Step` per fx node, with the rules for filtering layers.

Internal to :mod:`experiments.analysis.receptive_field`. :class:`Propagator` visits the nodes in graph
(= execution) order, merges the states of a node's tensor inputs (:func:`~.rf_state.union`), and
dispatches on what the node is: a module call (:meth:`Propagator._module`), a function or tensor method
(:meth:`Propagator._function`). Convolutions, pools and resampling are modelled here; layout changes
(views, permutes, slices, reductions) by :class:`~.rf_layout.LayoutRules`.

Normalisation layers are treated as pointwise (their statistics are constants in eval mode, the usual
convention in receptive-field analysis). 1-D convolutions/pools act on the last axis. Unknown leaf
modules (and unknown functions) are assumed pointwise when the recorded shapes show that they keep the
spatial size; otherwise :class:`~experiments.errors.UnsupportedOperationError` names them.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import torch.fx as fx
from torch import nn

from experiments.errors import UnsupportedOperationError

from .rf_layout import LayoutRules
from .rf_ops import (
    DIM_GLOBAL,
    GLOBAL_MODULES,
    INTERP_TAPS,
    PAD_MODULES,
    PERMUTES,
    POINTWISE_MODULES,
    POINTWISE_NAMES,
    POOL_FUNCTIONS,
    REDUCTIONS,
    UNSUPPORTED_3D,
    VIEWS,
    conv_padding,
    pool_params,
)
from .rf_state import GLOBAL_STATE, ONE, RFState, Step, frac, hw, kernel, max_int, resample, transposed, union
from .rf_tracing import TensorInfo


class Propagator(LayoutRules):
    """Walks the fx graph once, computing an :class:`~.rf_state.RFState` for every tensor-valued node.

    After :meth:`run`: ``steps`` (per node), ``output_state`` (the union over the graph's outputs) and
    ``node_call`` (which re-use of its module a call_module node is).
    """

    def __init__(self, gm: fx.GraphModule, meta: dict[fx.Node, Any] | None) -> None:
        super().__init__(gm, meta)
        self.steps: dict[fx.Node, Step] = {}
        self.calls: dict[str, int] = {}
        self.node_call: dict[fx.Node, int] = {}
        self.seen_input = False
        self.output_state: RFState | None = None

    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.current = node
            if node.op == "output":
                outs = [self.states.get(n) for n in node.all_input_nodes]
                outs = [s for s in outs if s is not None]
                try:
                    self.output_state = union(outs) if outs else None
                except UnsupportedOperationError:  # several outputs in different layouts
                    self.output_state = max(outs, key=lambda s: max(s.rf))
                continue
            if node.op == "call_module":
                idx = self.calls.get(str(node.target), 0)
                self.calls[str(node.target)] = idx + 1
                self.node_call[node] = idx
            step = self._step(node)
            self.steps[node] = step
            self.states[node] = step.state

    def _step(self, node: fx.Node) -> Step:
        if node.op == "placeholder":
            if self.seen_input:
                return Step(None, "input")
            self.seen_input = True
            return Step(RFState(), "input")
        if node.op == "get_attr" or self._is_meta_only(node):
            return Step(None, "constant")
        live = [s for s in (self.states.get(n) for n in node.all_input_nodes) if s is not None]
        if not live:
            return Step(None, "constant")
        try:
            base = union(live)
        except UnsupportedOperationError as exc:
            raise self._unsupported(node, str(exc)) from None
        if node.op == "call_module":
            return self._module(node, base)
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        name = "getitem" if name == "__getitem__" else str(name).lstrip("_")
        return self._function(node, base, name)

    def _module(self, node: fx.Node, base: RFState) -> Step:
        m = self.modules[str(node.target)]
        if isinstance(m, UNSUPPORTED_3D):
            raise self._unsupported(node, "3-D and fractional layers are not supported")
        if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
            nd = 1 if isinstance(m, nn.ConvTranspose1d) else 2
            k, s, p, d = (
                hw(v, nd, n)
                for v, n in zip((m.kernel_size, m.stride, m.padding, m.dilation), (1, 1, 0, 1), strict=True)
            )
            return Step(transposed(self._std(node, base), k, s, p, d), "conv_transpose", max_int(d))
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nd = 1 if isinstance(m, nn.Conv1d) else 2
            k, s, d = (hw(v, nd, 1) for v in (m.kernel_size, m.stride, m.dilation))
            p = conv_padding(m.padding, k, d, nd)
            return Step(kernel(self._std(node, base), k, s, p, d), "conv", max_int(d))
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.LPPool1d, nn.LPPool2d)):
            nd = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d, nn.LPPool1d)) else 2
            k, s, p, d = (hw(v, nd, n) for v, n in zip(pool_params(m), (1, 1, 0, 1), strict=True))
            return Step(kernel(self._std(node, base), k, s, p, d), "pool", max_int(d))
        if isinstance(
            m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
        ):
            return self._adaptive(node, base)
        if isinstance(m, (nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)):
            return Step(GLOBAL_STATE, "global_pool")
        if isinstance(m, nn.Upsample):
            return self._interpolate(node, base, m.scale_factor, m.mode, m.align_corners)
        if isinstance(m, (nn.MaxUnpool1d, nn.MaxUnpool2d)):
            nd = 1 if isinstance(m, nn.MaxUnpool1d) else 2
            k, s, p = (
                hw(v, nd, n) for v, n in zip((m.kernel_size, m.stride, m.padding), (1, 1, 0), strict=True)
            )
            return Step(transposed(self._std(node, base), k, s, p, (1, 1), grow=False), "unpool")
        if isinstance(m, nn.PixelShuffle):
            r = m.upscale_factor
            return Step(resample(self._std(node, base), (r, r), (0, 0)), "pixel_shuffle")
        if isinstance(m, nn.PixelUnshuffle):
            r = m.downscale_factor
            return Step(kernel(self._std(node, base), (r, r), (r, r), (0, 0), (1, 1)), "pixel_unshuffle")
        if isinstance(m, nn.Flatten):
            return self._flatten(node, base, m.start_dim, m.end_dim)
        if isinstance(m, (nn.Linear, nn.Bilinear)):
            return self._linear(node, base)
        if isinstance(m, GLOBAL_MODULES):
            return Step(GLOBAL_STATE, "attention")
        if isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            dim = 1 if m.dim is None else m.dim
            if self._touches_spatial(dim, self._ndim(node.args[0]), base):
                return Step(GLOBAL_STATE, "global")
            return Step(base)
        if isinstance(m, nn.GLU):
            return self._along(node, base, m.dim, "GLU along a spatial axis halves the image")
        if isinstance(m, POINTWISE_MODULES):
            return Step(base)
        if isinstance(m, PAD_MODULES):
            return self._pad(node, base, m.padding)  # type: ignore[attr-defined]
        return self._generic(node, base, known_pointwise=False)

    def _conv_function(self, node: fx.Node, base: RFState, name: str) -> Step:
        """``F.conv1d/2d`` and ``F.conv_transpose1d/2d``: the kernel size comes from the recorded weight."""
        nd = 1 if name.endswith("1d") else 2
        is_transposed = name.startswith("conv_transpose")
        names = ["input", "weight", "bias", "stride", "padding"]
        names += ["output_padding", "groups", "dilation"] if is_transposed else ["dilation", "groups"]
        a = self._bind(node, names)
        w = self._value(a["weight"])
        if not isinstance(w, TensorInfo):
            raise self._unsupported(node, "cannot determine the kernel size")
        k = hw(w.shape[2:], nd, 1)
        s, d = hw(self._value(a.get("stride", 1)), nd, 1), hw(self._value(a.get("dilation", 1)), nd, 1)
        st = self._std(node, base)
        if is_transposed:
            p = hw(self._value(a.get("padding", 0)), nd, 0)
            return Step(transposed(st, k, s, p, d), "conv_transpose", max_int(d))
        p = conv_padding(self._value(a.get("padding", 0)), k, d, nd)
        return Step(kernel(st, k, s, p, d), "conv", max_int(d))

    def _pool_function(self, node: fx.Node, base: RFState, name: str) -> Step:
        """``F.max_pool*``, ``F.avg_pool*``, ``F.lp_pool*`` (each with its own positional order)."""
        nd = 1 if "1d" in name else 2
        if name.startswith("lp_pool"):
            a = self._bind(node, ["input", "norm_type", "kernel_size", "stride", "ceil_mode"])
        elif name.startswith("avg_pool"):
            a = self._bind(node, ["input", "kernel_size", "stride", "padding"])
        else:
            a = self._bind(node, ["input", "kernel_size", "stride", "padding", "dilation"])
        k = self._value(a["kernel_size"])
        s = self._value(a.get("stride")) or k
        k, s = hw(k, nd, 1), hw(s, nd, 1)
        p, d = hw(self._value(a.get("padding", 0)), nd, 0), hw(self._value(a.get("dilation", 1)), nd, 1)
        return Step(kernel(self._std(node, base), k, s, p, d), "pool", max_int(d))

    def _function(self, node: fx.Node, base: RFState, name: str) -> Step:
        bind = self._bind
        if name in ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"):
            return self._conv_function(node, base, name)
        if name in POOL_FUNCTIONS:
            return self._pool_function(node, base, name)
        if name.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
            if name.endswith("3d"):
                return Step(GLOBAL_STATE, "global_pool")
            return self._adaptive(node, base)
        if name in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
            a = bind(node, ["input", "size", "scale_factor", "mode", "align_corners"])
            mode, align = a.get("mode", "nearest"), a.get("align_corners")
            if name == "upsample_bilinear":
                mode, align = "bilinear", True
            elif name == "upsample_nearest":
                mode, align = "nearest", None
            return self._interpolate(
                node, base, a.get("scale_factor"), mode, align, a.get("antialias", False)
            )
        if name in ("max_unpool1d", "max_unpool2d"):
            nd = 1 if "1d" in name else 2
            a = bind(node, ["input", "indices", "kernel_size", "stride", "padding"])
            k = self._value(a["kernel_size"])
            s = self._value(a.get("stride")) or k
            k, s, p = hw(k, nd, 1), hw(s, nd, 1), hw(self._value(a.get("padding", 0)), nd, 0)
            return Step(transposed(self._std(node, base), k, s, p, (1, 1), grow=False), "unpool")
        if name in ("pixel_shuffle", "pixel_unshuffle"):
            a = bind(node, ["input", "factor"])
            r = int(self._value(a.get("factor", a.get("upscale_factor", a.get("downscale_factor")))))
            st = self._std(node, base)
            if name == "pixel_shuffle":
                return Step(resample(st, (r, r), (0, 0)), "pixel_shuffle")
            return Step(kernel(st, (r, r), (r, r), (0, 0), (1, 1)), "pixel_unshuffle")
        if name == "pad":
            a = bind(node, ["input", "pad", "mode", "value"])
            return self._pad(node, base, self._value(a["pad"]))
        if name == "flatten":
            a = bind(node, ["input", "start_dim", "end_dim"], {"start_dim": 0, "end_dim": -1})
            return self._flatten(node, base, self._value(a["start_dim"]), self._value(a["end_dim"]))
        if name in ("linear", "bilinear"):
            return self._linear(node, base)
        if name in ("scaled_dot_product_attention", "multi_head_attention_forward"):
            return Step(GLOBAL_STATE, "attention")
        if name == "getitem":
            return self._getitem(node, base)
        if name == "getattr":
            attr = node.args[1]
            if attr == "data":
                return Step(base)
            if attr in ("T", "mT", "mH", "H"):
                return self._permute(node, base, "t" if attr == "T" else "transpose_last")
            return self._generic(node, base, known_pointwise=False)
        if name in REDUCTIONS:
            return self._reduction(node, base, name)
        if name in DIM_GLOBAL:
            names = ["input", "p", "dim"] if name == "normalize" else ["input", "dim"]
            default = 1 if name in ("normalize", "softmax", "log_softmax", "softmin") else None
            a = bind(node, names, {"dim": default})
            if self._touches_spatial(a["dim"], self._ndim(node.args[0]), base):
                return Step(GLOBAL_STATE, "global")
            return Step(base)
        if name in ("cat", "concat", "concatenate", "stack"):
            a = bind(node, ["tensors", "dim"], {"dim": 0})
            tensors = a["tensors"]
            first = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else None
            if name == "stack":
                return self._insert_dim(node, base, a["dim"], self._ndim(first))
            return self._along(node, base, a["dim"], "concatenation along a spatial axis", self._ndim(first))
        if name in ("split", "chunk", "tensor_split", "split_with_sizes"):
            a = bind(node, ["input", "arg", "dim"], {"dim": 0})
            return self._along(node, base, a["dim"], "splitting along a spatial axis")
        if name == "unbind":
            a = bind(node, ["input", "dim"], {"dim": 0})
            return self._remove_dims(node, base, a["dim"])
        if name == "glu":
            a = bind(node, ["input", "dim"], {"dim": -1})
            return self._along(node, base, a["dim"], "GLU along a spatial axis halves the image")
        if name in PERMUTES or name == "t":
            return self._permute(node, base, name)
        if name in VIEWS:
            return self._view(node, base, name)
        return self._generic(node, base, known_pointwise=name in POINTWISE_NAMES)

    def _adaptive(self, node: fx.Node, base: RFState) -> Step:
        """Adaptive pooling: global to 1x1, otherwise its exact windows when shapes are known."""
        st = self._std(node, base)
        in_shape, out_shape = self.shape_of(node.args[0]), self.shape_of(node)
        if st.is_global or in_shape is None or out_shape is None:
            return Step(GLOBAL_STATE, "global_pool")
        nd = 1 if len(in_shape) == 3 else 2
        ins, outs = hw(in_shape[-nd:], nd, 1), hw(out_shape[-nd:], nd, 1)
        if all(o == 1 for o in outs) and any(i > 1 for i in ins):
            return Step(GLOBAL_STATE, "global_pool")
        for axis in range(2):
            i, o = int(ins[axis]), int(outs[axis])
            if i == o:
                continue
            if o < i:  # windows [floor(n*i/o), ceil((n+1)*i/o)): at most ceil(i/o) (+1) units
                k: list[Any] = [1, 1]
                s: list[Any] = [1, 1]
                k[axis] = -(-i // o) + (0 if i % o == 0 else 1)
                s[axis] = Fraction(i, o)
                st = kernel(st, k, s, (0, 0), (1, 1))
            else:  # replication (upsampling)
                f: list[Any] = [1, 1]
                taps = [0, 0]
                f[axis] = Fraction(o, i)
                taps[axis] = 0 if o % i == 0 else 1
                st = resample(st, f, taps)
        return Step(st, "adaptive_pool")

    def _interpolate(
        self,
        node: fx.Node,
        base: RFState,
        scale_factor: Any,
        mode: Any,
        align_corners: Any,
        antialias: Any = False,
    ) -> Step:
        st = self._std(node, base)
        mode, align_corners = self._value(mode), bool(self._value(align_corners))
        in_shape, out_shape = self.shape_of(node.args[0]), self.shape_of(node)
        ndim = len(in_shape) if in_shape is not None else 4
        if ndim not in (3, 4):
            raise self._unsupported(node, "only 1-D and 2-D resampling is supported")
        nd = ndim - 2
        scale_factor = self._value(scale_factor)
        if scale_factor is not None:
            factor = hw(scale_factor, nd, 1)
        elif in_shape is not None and out_shape is not None:
            ratios = tuple(Fraction(o, i) for o, i in zip(out_shape[-nd:], in_shape[-nd:], strict=True))
            factor = hw(ratios, nd, ONE)
        else:
            raise self._unsupported(node, "interpolation to a size needs recorded shapes; pass input_shape")
        if mode == "area":  # adaptive average pooling: ceil(1/f) units when shrinking
            taps = tuple(
                math.ceil(1 / frac(f)) - 1 if frac(f) < 1 else (0 if frac(f).denominator == 1 else 1)
                for f in factor
            )
        elif mode in INTERP_TAPS:
            # antialiased downsampling widens the (bi)linear / bicubic kernel to (t + 1) / f taps
            t = INTERP_TAPS[mode]
            wide = bool(self._value(antialias)) and t > 0
            taps = tuple(math.ceil((t + 1) / frac(f)) - 1 if wide and frac(f) < 1 else t for f in factor)
        else:
            raise self._unsupported(node, f"unknown interpolation mode {mode!r}")
        return Step(resample(st, factor, taps, align_corners), "upsample")
