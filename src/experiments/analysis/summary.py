"""Per-layer summary of any image model: output shapes, parameters, FLOPs, stride, dilation, rf.

One forward pass on zeros (eval mode, ``torch.no_grad``; the model's training flags are restored)
runs under :class:`torch.utils.flop_counter.FlopCounterMode` with forward hooks on every module.
Each hook reads the counter's running total before and after the module, so a module's FLOPs are
exactly the FLOPs counted while it ran, minus those of its submodules; FLOPs of functional ops in a
container's ``forward`` stay with that container.  Hence the rows always add up to the counter's
total.

Conventions:

* **FLOPs** are FlopCounterMode's: one multiply-add counts as **2 FLOPs** (a Conv2d costs
  ``2 * Cin/groups * Cout * kH * kW * Hout * Wout`` per sample, a Linear ``2 * in * out``); biases,
  activations, normalisation, pooling and elementwise ops count 0.
* **Rows** are leaf modules (one row per call, in execution order) plus any container that owns
  parameters directly or performs counted functional ops itself.  A module's parameters are listed
  on its first call only (and shared parameters once), so ``sum(row.params) == total_params ==
  sum(p.numel() for p in model.parameters())``; parameters of modules that never ran are listed in
  rows without an output shape.
* **Stride** is the cumulative jump of the layer's output on the input grid, **dilation** the
  layer's own dilation, **rf** its theoretical receptive field (see :mod:`.receptive_field`;
  ``math.inf`` = global).  They are ``None`` if the model cannot be traced by torch.fx; the table is
  still produced and :attr:`ModelSummary.notes` says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .receptive_field import ReceptiveFieldError, RFAnalysis, analyze_receptive_field

__all__ = ["LayerRow", "ModelSummary", "format_count", "summarize"]

FLOP_CONVENTION = "FlopCounterMode: 1 multiply-add = 2 FLOPs; bias, activations, norms and pooling uncounted"


@dataclass
class LayerRow:
    """One module call.

    ``output_shape`` is the output tensor's shape, a tuple of shapes for multi-tensor outputs, or
    ``None`` for modules that never ran.  ``flops`` excludes submodules (see the module docstring).
    ``stride``/``rf`` are ``math.inf`` for global units and ``None`` when unknown.
    """

    name: str
    type: str
    output_shape: tuple[Any, ...] | None
    params: int
    flops: int
    stride: int | float | None
    dilation: int
    rf: int | float | None
    trainable_params: int = 0
    call_index: int = 0


def format_count(n: float, unit: str = "") -> str:
    """Human-friendly count: ``1234567 -> '1.2 M'``, ``format_count(3.45e7, 'FLOPs') -> '34.5 MFLOPs'``."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {prefix}{unit}"
    return f"{int(n)} {unit}".rstrip() if float(n).is_integer() else f"{n:.1f} {unit}".rstrip()


def _fmt_rf(value: int | float | None) -> str:
    if value is None:
        return "?"
    if math.isinf(value):
        return "global"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def _fmt_shape(shape: tuple[Any, ...] | None) -> str:
    if shape is None:
        return "(not run)"
    if shape and isinstance(shape[0], tuple):
        return " ".join(_fmt_shape(s) for s in shape)
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _json_rf(value: int | float | None) -> int | float | str | None:
    if value is None:
        return None
    if math.isinf(value):
        return "global"
    return int(value) if float(value).is_integer() else float(value)


def _json_shape(shape: tuple[Any, ...] | None) -> list[Any] | None:
    if shape is None:
        return None
    return [_json_shape(s) if isinstance(s, tuple) else int(s) for s in shape]


@dataclass
class ModelSummary:
    """Result of :func:`summarize`; ``rf`` is the receptive field of the model output."""

    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_flops: int
    input_shape: tuple[int, ...]
    rf: int | float | None
    output_shape: tuple[Any, ...] | None = None
    model_name: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def _table(self) -> tuple[list[str], list[list[str]]]:
        header = ["Layer", "Type", "Output shape", "Params", "FLOPs", "Stride", "Dil.", "RF"]
        body = [
            [
                r.name + (f"@{r.call_index}" if r.call_index else ""),
                r.type,
                _fmt_shape(r.output_shape),
                format_count(r.params) if r.params else "-",
                format_count(r.flops, "FLOPs") if r.flops else "-",
                "-" if r.stride is not None and math.isinf(r.stride) else _fmt_rf(r.stride),
                str(r.dilation),
                _fmt_rf(r.rf),
            ]
            for r in self.rows
        ]
        return header, body

    def _totals(self) -> list[tuple[str, str]]:
        return [
            ("Input shape", _fmt_shape(self.input_shape)),
            ("Output shape", _fmt_shape(self.output_shape)),
            ("Total params", f"{self.total_params:,} ({format_count(self.total_params)})"),
            ("Trainable params", f"{self.trainable_params:,} ({format_count(self.trainable_params)})"),
            ("Non-trainable params", f"{self.non_trainable_params:,}"),
            (
                "Total FLOPs",
                f"{self.total_flops:,} ({format_count(self.total_flops, 'FLOPs')}, 1 MAC = 2 FLOPs)",
            ),
            ("Receptive field", _fmt_rf(self.rf)),
        ]

    def to_text(self) -> str:
        """Aligned plain-text table followed by the totals."""
        header, body = self._table()
        numeric = {3, 4, 5, 6, 7}
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            parts = [
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        rule = "-" * len(line(header))
        title = f"{self.model_name} summary" if self.model_name else "Model summary"
        out = [title, rule, line(header), rule, *(line(r) for r in body), rule]
        label_w = max(len(k) for k, _ in self._totals())
        out += [f"{k.ljust(label_w)} : {v}" for k, v in self._totals()]
        out += [f"Note: {n}" for n in self.notes]
        return "\n".join(out)

    def to_markdown(self) -> str:
        """GitHub-flavoured markdown table followed by a bullet list of totals."""
        header, body = self._table()

        def esc(cell: str) -> str:
            return cell.replace("|", "\\|")

        out = ["| " + " | ".join(header) + " |"]
        out.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
        out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
        out.append("")
        out += [f"- **{k}**: {esc(v)}" for k, v in self._totals()]
        out += [f"- *Note*: {esc(n)}" for n in self.notes]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (strict JSON: global rf is the string ``"global"``, unknown is null)."""
        return {
            "model": self.model_name,
            "input_shape": _json_shape(self.input_shape),
            "output_shape": _json_shape(self.output_shape),
            "total_params": int(self.total_params),
            "trainable_params": int(self.trainable_params),
            "non_trainable_params": int(self.non_trainable_params),
            "total_flops": int(self.total_flops),
            "flop_convention": FLOP_CONVENTION,
            "rf": _json_rf(self.rf),
            "notes": list(self.notes),
            "rows": [
                {
                    "name": r.name,
                    "call_index": r.call_index,
                    "type": r.type,
                    "output_shape": _json_shape(r.output_shape),
                    "params": int(r.params),
                    "trainable_params": int(r.trainable_params),
                    "flops": int(r.flops),
                    "stride": _json_rf(r.stride),
                    "dilation": int(r.dilation),
                    "rf": _json_rf(r.rf),
                }
                for r in self.rows
            ],
        }

    def __str__(self) -> str:
        return self.to_text()


def _shapes(value: Any) -> list[tuple[int, ...]]:
    if isinstance(value, torch.Tensor):
        return [tuple(int(s) for s in value.shape)]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in _shapes(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _shapes(v)]
    return []


def _output_shape(value: Any) -> tuple[Any, ...] | None:
    shapes = _shapes(value)
    if not shapes:
        return None
    return shapes[0] if len(shapes) == 1 else tuple(shapes)


def _own_dilation(module: nn.Module) -> int:
    d = getattr(module, "dilation", 1)
    if isinstance(d, (tuple, list)):
        return int(max(d)) if d else 1
    return int(d) if isinstance(d, int) else 1


@dataclass
class _Call:
    module: nn.Module
    name: str
    index: int
    shape: tuple[Any, ...] | None = None
    flops: int = 0


def summarize(
    model: nn.Module,
    input_shape: Sequence[int],
    device: torch.device | str | None = None,
    *,
    dtype: torch.dtype | None = None,
    leaf_modules: Sequence[type[nn.Module]] = (),
) -> ModelSummary:
    """Summarise ``model`` for inputs of ``input_shape`` (N, C, H, W).

    ``device``/``dtype`` of the probe input default to those of the model's first parameter (the
    model is never moved or cast).  ``leaf_modules`` is forwarded to the receptive-field tracer.
    """
    params = list(model.parameters())
    buffers = list(model.buffers())
    first = next((t for t in params + buffers if t.is_floating_point()), None)
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    if dtype is None:
        dtype = first.dtype if first is not None else torch.get_default_dtype()
    input_shape = tuple(int(s) for s in input_shape)

    names: dict[nn.Module, str] = {}
    for name, m in model.named_modules():
        names.setdefault(m, name)
    calls: list[_Call] = []
    call_counts: dict[nn.Module, int] = {}
    stack: list[tuple[_Call, int, list[int]]] = []  # (call, flops at entry, flops of children)
    counter = FlopCounterMode(display=False)

    def pre_hook(module: nn.Module, args: Any) -> None:
        idx = call_counts.get(module, 0)
        call_counts[module] = idx + 1
        stack.append((_Call(module, names[module], idx), counter.get_total_flops(), [0]))

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        call, start, children = stack.pop()
        inclusive = counter.get_total_flops() - start
        call.flops = inclusive - children[0]
        call.shape = _output_shape(output)
        if stack:
            stack[-1][2][0] += inclusive
        calls.append(call)

    handles = []
    for m in names:
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(post_hook))
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        x = torch.zeros(input_shape, device=device, dtype=dtype)
        with torch.no_grad(), counter:
            output = model(x)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag
    total_flops = int(counter.get_total_flops())

    notes: list[str] = []
    analysis: RFAnalysis | None = None
    try:
        analysis = analyze_receptive_field(model, input_shape, leaf_modules=leaf_modules)
    except ReceptiveFieldError as exc:
        notes.append(f"receptive field unavailable: {exc}")
    except Exception as exc:  # the table must not depend on the analysis succeeding
        notes.append(f"receptive field unavailable ({type(exc).__name__}): {exc}")

    counted: set[int] = set()

    def take_params(module: nn.Module) -> tuple[int, int]:
        total = trainable = 0
        for p in module.parameters(recurse=False):
            if id(p) in counted:
                continue
            counted.add(id(p))
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        return total, trainable

    rows: list[LayerRow] = []
    for call in calls:
        module = call.module
        is_leaf = next(iter(module.children()), None) is None
        owns = any(True for _ in module.parameters(recurse=False))
        if not (is_leaf or owns or call.flops):
            continue
        n_params, n_train = take_params(module) if call.index == 0 else (0, 0)
        stride = rf = None
        if analysis is not None:
            key = call.name if call.index == 0 else f"{call.name}@{call.index}"
            rec = analysis.output if module is model else analysis.module_calls.get(key)
            if rec is not None:
                stride, rf = rec.jump, rec.rf
        rows.append(
            LayerRow(
                name=call.name or type(module).__name__,
                type=type(module).__name__,
                output_shape=call.shape,
                params=n_params,
                flops=call.flops,
                stride=stride,
                dilation=_own_dilation(module),
                rf=rf,
                trainable_params=n_train,
                call_index=call.index,
            )
        )
    for module, name in names.items():  # parameters of modules that never ran
        if module not in call_counts:
            n_params, n_train = take_params(module)
            if n_params:
                rows.append(
                    LayerRow(
                        name,
                        type(module).__name__,
                        None,
                        n_params,
                        0,
                        None,
                        _own_dilation(module),
                        None,
                        n_train,
                    )
                )
                notes.append(f"module '{name}' has parameters but was not called in forward")

    return ModelSummary(
        rows=rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_flops=total_flops,
        input_shape=input_shape,
        rf=analysis.rf if analysis is not None else None,
        output_shape=_output_shape(output),
        model_name=type(model).__name__,
        notes=notes,
    )
