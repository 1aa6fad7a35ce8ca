"""Reading the fx graph, and the rules for operations that move, crop or merge the spatial axes.

Internal to :mod:`experiments.analysis.receptive_field`. :class:`GraphFacts` answers what a rule needs
to know about a node (its recorded shape and argument values, where H and W sit in its tensor);
:class:`LayoutRules` adds the rules for views, permutes, slicing, padding, reductions and
concatenation. The position of the H and W dimensions is tracked through ``permute``/``transpose``/
``unsqueeze`` and reductions, so channels-last blocks (``x.permute(0, 2, 3, 1)`` -> ``LayerNorm`` ->
``Linear``) are pointwise, while a ``Linear`` over W is global; convolutions and pools require
(..., H, W) (:meth:`GraphFacts._std`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.fx as fx

from experiments.errors import UnsupportedOperationError

from .rf_ops import META_ATTRS, META_METHODS
from .rf_state import GLOBAL_STATE, RFState, Step, moved, shift
from .rf_tracing import summarise, tensor_infos


class GraphFacts:
    """What the rules read about a node: recorded values and shapes, and the states computed so far."""

    def __init__(self, gm: fx.GraphModule, meta: dict[fx.Node, Any] | None) -> None:
        self.gm = gm
        self.meta = meta
        self.modules = dict(gm.named_modules())
        self.states: dict[fx.Node, RFState | None] = {}  # filled in by the walk, in graph order
        self.current: fx.Node | None = None  # the node being worked on, for error messages

    def _where(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"module '{node.target}' ({type(self.modules[str(node.target)]).__name__})"
        name = getattr(node.target, "__name__", str(node.target))
        return f"{node.op} '{name}' (fx node '{node.name}')"

    def _unsupported(self, node: fx.Node, why: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(f"{self._where(node)}: {why}")

    def _value(self, arg: Any) -> Any:
        """Concrete value of an argument; fx nodes are looked up in the recording pass."""
        if isinstance(arg, fx.Node):
            if self.meta is not None and arg in self.meta:
                return self.meta[arg]
            if arg.op == "get_attr":
                obj: Any = self.gm
                for part in str(arg.target).split("."):
                    obj = getattr(obj, part)
                return summarise(obj)
            assert self.current is not None
            raise self._unsupported(
                self.current,
                f"argument '{arg.name}' is only known at run time; pass input_shape so that a "
                "recording pass can resolve it",
            )
        if isinstance(arg, (tuple, list)):
            return type(arg)(self._value(a) for a in arg)
        return arg

    def shape_of(self, arg: Any) -> tuple[int, ...] | None:
        if isinstance(arg, fx.Node) and self.meta is not None and arg in self.meta:
            infos = tensor_infos(self.meta[arg])
            return infos[0].shape if infos else None
        return None

    def _ndim(self, arg: Any, default: int = 4) -> int:
        shape = self.shape_of(arg)
        return len(shape) if shape is not None else default

    @staticmethod
    def _pos(st: RFState, ndim: int) -> tuple[int, int]:
        """Non-negative positions of the H and W dimensions in a tensor of rank ``ndim``."""
        return (ndim + st.axes[0], ndim + st.axes[1])

    def _dims(self, dim: Any, ndim: int) -> list[int] | None:
        """Normalised dimension list of a ``dim`` argument; None means "all dimensions"."""
        dim = self._value(dim)
        if dim is None:
            return None
        return [int(d) % ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]

    def _touches_spatial(self, dim: Any, ndim: int, st: RFState) -> bool:
        dims = self._dims(dim, ndim)
        return dims is None or bool(set(dims) & set(self._pos(st, ndim)))

    def _std(self, node: fx.Node, st: RFState) -> RFState:
        """State in (..., H, W) layout, as convolutions, pools and resampling expect it."""
        if st.is_global or st.axes == (-2, -1):
            return st
        if st.axes == (-1, -2):  # a transposed image: swap the per-axis values instead
            return RFState(st.rf[::-1], st.jump[::-1], st.start[::-1])  # type: ignore[arg-type]
        raise self._unsupported(node, f"expects (..., H, W) input but the spatial axes are at {st.axes}")

    @staticmethod
    def _bind(node: fx.Node, names: Sequence[str], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        out = dict(defaults or {})
        out.update(zip(names, node.args, strict=False))
        out.update(node.kwargs)
        return out

    def _is_meta_only(self, node: fx.Node) -> bool:
        """Node whose value is not a tensor (sizes, dtypes ...): it carries no receptive field."""
        if self.meta is not None and node in self.meta:
            return not tensor_infos(self.meta[node])
        if node.op == "call_method" and node.target in META_METHODS:
            return True
        if node.op == "call_function" and node.target is getattr and len(node.args) > 1:
            return node.args[1] in META_ATTRS
        return node.op == "call_function" and node.target is len


class LayoutRules(GraphFacts):
    """Rules for operations that keep, move, crop or collapse the spatial axes rather than filter them."""

    def _generic(self, node: fx.Node, base: RFState, known_pointwise: bool) -> Step:
        """Unknown op: pointwise if it provably keeps the spatial dimensions, else an error."""
        if base.is_global:
            return Step(base)
        out_shape = self.shape_of(node)
        in_shapes = [self.shape_of(n) for n in node.all_input_nodes if self.states.get(n) is not None]
        if out_shape is not None and in_shapes and all(s is not None for s in in_shapes):
            out_pos = self._pos(base, len(out_shape))
            keeps = all(
                len(s) == len(out_shape) and all(s[p] == out_shape[p] for p in out_pos)  # type: ignore[index]
                for s in in_shapes
            )
            if min(out_pos) >= 0 and keeps:
                return Step(base)
            raise self._unsupported(
                node,
                f"changes the spatial size ({in_shapes} -> {out_shape}) "
                "and its effect on the receptive field is unknown",
            )
        if known_pointwise:
            return Step(base)
        raise self._unsupported(
            node, "unknown operation and no recorded shapes to check that it keeps the spatial size"
        )

    def _along(self, node: fx.Node, base: RFState, dim: Any, why: str, ndim: int | None = None) -> Step:
        """Ops acting along one dimension (cat, split, GLU): fine unless it is a spatial one."""
        if base.is_global:
            return Step(base)
        ndim = self._ndim(node.args[0]) if ndim is None else ndim
        if self._touches_spatial(dim, ndim, base):
            raise self._unsupported(node, why)
        return Step(base)

    def _insert_dim(self, node: fx.Node, base: RFState, dim: Any, ndim: int) -> Step:
        """``unsqueeze`` / ``stack``: a new dimension at ``dim`` of the (ndim+1)-rank result."""
        if base.is_global:
            return Step(base)
        q = int(self._value(dim)) % (ndim + 1)
        axes = [a - 1 if ndim + a < q else a for a in base.axes]
        return Step(moved(base, axes), "reshape")

    def _remove_dims(self, node: fx.Node, base: RFState, dim: Any, ndim: int | None = None) -> Step:
        """``unbind`` / ``squeeze(dim)`` / reductions without keepdim: drop non-spatial dims."""
        if base.is_global:
            return Step(base)
        ndim = self._ndim(node.args[0]) if ndim is None else ndim
        dims = self._dims(dim, ndim)
        pos = self._pos(base, ndim)
        if dims is None or set(dims) & set(pos):
            return Step(GLOBAL_STATE, "flatten")
        axes = [a + sum(1 for d in dims if d > p) for a, p in zip(base.axes, pos, strict=True)]
        return Step(moved(base, axes), "reshape")

    def _linear(self, node: fx.Node, base: RFState) -> Step:
        """Linear layers mix their last dimension: global on (.., W), pointwise on channels-last."""
        if base.is_global:
            return Step(base, "linear")
        ndim = self._ndim(node.args[0])
        if ndim - 1 in self._pos(base, ndim):
            return Step(GLOBAL_STATE, "linear")
        return Step(base, "linear")

    def _pad(self, node: fx.Node, base: RFState, pad: Any) -> Step:
        """``F.pad`` / padding modules: pairs (left, right) start at the last dimension."""
        if base.is_global:
            return Step(base, "pad")
        pad = tuple(int(v) for v in pad)
        offsets = []
        for a in base.axes:
            pair = -a - 1  # dimension -1 uses pad[0:2], -2 uses pad[2:4] ...
            offsets.append(-pad[2 * pair] if 2 * pair < len(pad) else 0)
        return Step(shift(base, offsets), "pad")

    def _flatten(self, node: fx.Node, base: RFState, start: int, end: int) -> Step:
        if base.is_global:
            return Step(base, "flatten")
        ndim = self._ndim(node.args[0] if node.args else None)
        start, end = int(start) % ndim, int(end) % ndim
        if start >= end:
            return Step(base, "reshape")
        pos = self._pos(base, ndim)
        if any(start <= p <= end for p in pos):
            return Step(GLOBAL_STATE, "flatten")
        axes = [a + (end - start) if p > end else a for a, p in zip(base.axes, pos, strict=True)]
        return Step(moved(base, axes), "reshape")

    def _reduction(self, node: fx.Node, base: RFState, name: str) -> Step:
        names = ["input", "p", "dim", "keepdim"] if name == "norm" else ["input", "dim", "keepdim"]
        a = self._bind(node, names, {"dim": None, "keepdim": False})
        other = a.get("dim")
        if name in ("max", "min") and isinstance(other, fx.Node) and self.states.get(other) is not None:
            return Step(base)  # elementwise torch.max(a, b)
        ndim = self._ndim(node.args[0])
        if self._touches_spatial(a["dim"], ndim, base):
            return Step(GLOBAL_STATE, "global_pool")
        if base.is_global or self._value(a.get("keepdim", False)):
            return Step(base)
        return self._remove_dims(node, base, a["dim"], ndim)

    def _view(self, node: fx.Node, base: RFState, name: str) -> Step:
        """Reshapes: spatial layout kept if the dims from H onwards survive, else global."""
        if base.is_global:
            return Step(base, "reshape")
        ndim = self._ndim(node.args[0])
        dim = self._bind(node, ["input", "dim"]).get("dim")
        if name.startswith("unsqueeze"):
            return self._insert_dim(node, base, dim, ndim)
        if name.startswith("squeeze") and dim is not None:
            return self._remove_dims(node, base, dim, ndim)
        in_shape, out_shape = self.shape_of(node.args[0]), self.shape_of(node)
        if in_shape is not None and out_shape is not None:
            tail = in_shape[min(self._pos(base, ndim)) :]
            if len(out_shape) >= len(tail) and tuple(out_shape[len(out_shape) - len(tail) :]) == tuple(tail):
                return Step(base, "reshape")
        return Step(GLOBAL_STATE, "flatten")

    def _permute(self, node: fx.Node, base: RFState, name: str) -> Step:
        if base.is_global:
            return Step(base, "permute")
        ndim = self._ndim(node.args[0])
        perm = list(range(ndim))  # output dimension i comes from input dimension perm[i]
        args = [self._value(a) for a in node.args[1:]] + [self._value(v) for v in node.kwargs.values()]
        if name == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            perm = [int(d) % ndim for d in dims]
        elif name == "t":
            perm = perm[::-1]
        elif name == "transpose_last":
            perm[-2], perm[-1] = perm[-1], perm[-2]
        elif name in ("transpose", "swapaxes", "swapdims"):
            a, b = (int(x) % ndim for x in args[:2])
            perm[a], perm[b] = perm[b], perm[a]
        else:  # movedim / moveaxis
            src, dst = args[:2]
            src = [int(s) % ndim for s in (src if isinstance(src, (tuple, list)) else [src])]
            dst = [int(d) % ndim for d in (dst if isinstance(dst, (tuple, list)) else [dst])]
            perm = [-1] * ndim
            for s_, d_ in zip(src, dst, strict=True):
                perm[d_] = s_
            rest = iter(d for d in range(ndim) if d not in src)
            perm = [p if p >= 0 else next(rest) for p in perm]
        axes = [perm.index(p) - ndim for p in self._pos(base, ndim)]
        return Step(moved(base, axes), "permute")

    def _getitem(self, node: fx.Node, base: RFState) -> Step:
        src, idx = node.args[0], node.args[1]
        src_meta = self.meta.get(src) if (self.meta is not None and isinstance(src, fx.Node)) else None
        if base.is_global or isinstance(src_meta, (tuple, list, dict)):
            return Step(base)  # element of a tuple output (max-pool indices, split, chunk ...)
        if isinstance(idx, fx.Node) and self.states.get(idx) is not None:
            return self._generic(node, base, known_pointwise=False)  # advanced (tensor) indexing
        idx = self._value(idx)
        items = list(idx) if isinstance(idx, tuple) else [idx]
        shape = self.shape_of(src)
        ndim = len(shape) if shape is not None else 4
        if any(it is Ellipsis for it in items):
            at = next(i for i, it in enumerate(items) if it is Ellipsis)
            consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
            items = items[:at] + [slice(None)] * (ndim - consumed) + items[at + 1 :]
        out_dims: list[int | None] = []  # input dimension behind each output dimension (None: new)
        per_dim: dict[int, Any] = {}
        d = 0
        for it in items:
            if it is None:
                out_dims.append(None)
                continue
            per_dim[d] = it
            if not isinstance(it, int):
                out_dims.append(d)
            d += 1
        out_dims += list(range(d, ndim))
        offset, step = [0, 0], [1, 1]
        pos = self._pos(base, ndim)
        for axis, p in enumerate(pos):
            item = per_dim.get(p, slice(None))
            if not isinstance(item, slice):
                raise self._unsupported(node, "indexing a spatial axis with an integer or tensor")
            first, stride = item.start, 1 if item.step is None else int(item.step)
            if stride <= 0:
                raise self._unsupported(node, "non-positive slice step")
            if first is None:
                first = 0
            elif int(first) < 0:
                if shape is None:
                    raise self._unsupported(node, "negative slice start needs recorded shapes")
                first = slice(first, None, stride).indices(shape[p])[0]
            offset[axis], step[axis] = int(first), stride
        axes = [out_dims.index(p) - len(out_dims) for p in pos]
        return Step(moved(shift(base, offset, step), axes), "slice")
