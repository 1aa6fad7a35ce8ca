"""Imports run one way: no module of ``src/experiments`` imports a module of a higher layer, and no import cycle
exists, counting every import in the source (inside functions too, where imports hide to keep start-up fast).

Why a test: a cycle or a climbing arrow is invisible at runtime (Python tolerates function-level cycles) until a
refactor reorders them into an ImportError, and the torch-free modules (config, validation, naming) stay torch-free
only while nothing pulls them upward. Read the ``import`` statements with ``ast``, so nothing is imported to check.

The layer order (lower may not import higher; a layer may import itself, but not in a circle), as the code has it:

    0 base        errors, naming, specs, run.layout, run.unpickle: names, facts, a run dir's file names and the
                  allow-list unpickler of data files; standard library and OmegaConf only (run.layout and run.unpickle
                  live with the run but everyone who reads a run dir or a CIFAR batch needs them)
    1 config      config, config_tree
    2 parts       layers, analysis, data (the data's file readers are what validation samples files with)
    3             models
    4 run         run/: a run's files and bookkeeping (layout, schema, history, state, signals, checkpoints,
                  record, resume, ...); it builds nothing, and build and the diagnostics write through it
    5 validation  validation/: reads config, specs, the run dir layout (resume, encoder_from) and the data's
                  file readers (sampled mask files)
    6             tasks, diagnostics, speed
    7             build
    8             reporting, search (the Optuna study's storage, pruning callback, explanation, re-test)
    9 commands    train, evaluate, inspect, report, classics, and any new top-level module (landscape, search ...)

and beside the order, pairs that never import each other (:data:`INDEPENDENT`): run records and validation both read
``naming`` and ``specs``, never each other.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "experiments"
PACKAGE = "experiments"

#: module prefix (after ``experiments.``) -> layer; the longest matching prefix decides
LAYERS: dict[str, int] = {
    "": 0,  # the package's own __init__
    "errors": 0, "naming": 0, "specs": 0, "run.layout": 0, "run.unpickle": 0,
    "config": 1, "config_tree": 1,
    "layers": 2, "analysis": 2, "data": 2,
    "models": 3,
    "run": 4,
    "validation": 5,
    "tasks": 6, "diagnostics": 6, "speed": 6,
    "build": 7,
    "reporting": 8, "search": 8,
    "train": 9, "evaluate": 9, "inspect": 9, "report": 9, "classics": 9,
}
#: parts (LAYERS keys) that may not import each other in either direction, whatever their layers
INDEPENDENT = (("run", "validation"),)
#: where a top-level module not named in LAYERS goes: with the commands, so a new command needs no entry
COMMANDS = 9
#: modules that must import without torch or Lightning (``--help`` and validation run before torch is imported)
TORCH_FREE = ("experiments.config", "experiments.validation", "experiments.naming")


def module_files(root: Path = SOURCE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root`` (a package is its ``__init__.py``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: Iterable[str]) -> list[tuple[str, int]]:
    """``(imported project module, line)`` for every import statement of the file, at any depth (functions,
    ``if TYPE_CHECKING``, ``try``), relative imports resolved; ``from pkg import sub`` counts the module ``pkg.sub``,
    ``from pkg import name`` counts ``pkg``."""
    known = set(known)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            # ``from pkg import sub`` imports the module sub; ``from pkg import name`` imports pkg itself
            targets = submodules if all(name in known for name in submodules) else [base, *submodules]
        for target in targets:
            if target in known and target != module:
                found.append((target, node.lineno))
    return found


def import_graph(root: Path = SOURCE) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """``(modules, edges)``: ``edges[a][b]`` is the first line of ``a`` that imports ``b``."""
    modules = module_files(root)
    edges: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges[module] = {}
        for target, line in imports_of(module, path, modules):
            edges[module].setdefault(target, line)
    return modules, edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def part(module: str) -> str | None:
    """The LAYERS key a dotted module name falls under (its longest prefix there); None for a new top-level module."""
    name = module.removeprefix(PACKAGE).removeprefix(".")
    parts = name.split(".") if name else []
    for size in range(len(parts), -1, -1):
        prefix = ".".join(parts[:size])
        if prefix in LAYERS and (size or not parts):
            return prefix
    return None


def layer(module: str) -> int:
    """The layer of a dotted module name (a new top-level module is a command)."""
    key = part(module)
    return COMMANDS if key is None else LAYERS[key]


def where(path: Path) -> Path:
    """A file as the failure message shows it: relative to the checkout when it is in it."""
    return path.relative_to(SOURCE.parents[1]) if path.is_relative_to(SOURCE.parents[1]) else path


def climbing(modules: dict[str, Path], edges: dict[str, dict[str, int]]) -> list[str]:
    """One line per import of a higher layer: ``file:line: a (layer i) imports b (layer j)``."""
    lines = []
    for module, targets in edges.items():
        for target, line in sorted(targets.items()):
            if layer(target) > layer(module):
                lines.append(f"{where(modules[module])}:{line}: {module} (layer {layer(module)}) imports {target} "
                             f"(layer {layer(target)})")
    return lines


def crossing(modules: dict[str, Path], edges: dict[str, dict[str, int]]) -> list[str]:
    """One line per import between two INDEPENDENT parts."""
    pairs = {frozenset(pair) for pair in INDEPENDENT}
    return [f"{where(modules[module])}:{line}: {module} imports {target}, and "
            f"{part(module)}/ and {part(target)}/ never import each other"
            for module, targets in edges.items() for target, line in sorted(targets.items())
            if frozenset((part(module), part(target))) in pairs and part(module) != part(target)]


def cycle_report(modules: dict[str, Path], edges: dict[str, dict[str, int]], component: list[str]) -> str:
    """A cycle as the imports that close it, each with its file and line."""
    members = set(component)
    links = [f"{where(modules[a])}:{line}: {a} imports {b}"
             for a in component for b, line in sorted(edges[a].items()) if b in members]
    return "cycle of " + ", ".join(component) + ":\n    " + "\n    ".join(links)


def test_no_module_imports_a_higher_layer() -> None:
    modules, edges = import_graph()
    assert len(modules) > 50 and sum(map(len, edges.values())) > 100  # the walk really read the package
    offending = climbing(modules, edges)
    assert not offending, "imports that climb the layer order (tests/test_architecture.py):\n" + "\n".join(offending)


def test_run_records_and_validation_never_import_each_other() -> None:
    modules, edges = import_graph()
    offending = crossing(modules, edges)
    assert not offending, "\n".join(offending)


def test_there_is_no_import_cycle_at_any_depth() -> None:
    modules, edges = import_graph()
    found = cycles(edges)
    assert not found, "\n".join(cycle_report(modules, edges, c) for c in found)


def test_the_checks_catch_a_function_level_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The walk sees imports inside functions and relative ones, and the layer order refuses a climbing one."""
    package = tmp_path / PACKAGE
    (package / "run").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "run" / "__init__.py").write_text("")
    (package / "naming.py").write_text("def name():\n    from experiments.run import record\n    return record\n")
    (package / "run" / "record.py").write_text("from .. import naming\n")
    modules, edges = import_graph(package)
    assert edges["experiments.naming"] == {"experiments.run.record": 2}
    assert edges["experiments.run.record"] == {"experiments.naming": 1}
    assert cycles(edges) == [["experiments.naming", "experiments.run.record"]]
    assert layer("experiments.naming") == 0 < layer("experiments.run.record") == layer("experiments.run") == 4
    assert layer("experiments.run.layout") == 0 and part("experiments.run.layout") == "run.layout"
    (package / "run" / "record.py").write_text("from experiments.validation import checks\n")
    (package / "validation").mkdir()
    (package / "validation" / "__init__.py").write_text("from experiments.run import layout\n")  # a base module
    (package / "validation" / "checks.py").write_text("")
    (package / "run" / "layout.py").write_text("")
    modules, edges = import_graph(package)
    assert crossing(modules, edges) == [
        f"{package / 'run' / 'record.py'}:1: experiments.run.record imports experiments.validation.checks, and run/ "
        "and validation/ never import each other",
    ]
    assert layer("experiments.landscape") == COMMANDS == layer("experiments.classics.page")
    assert layer("experiments") == 0 and layer("experiments.validation.keys") == 5


def test_torch_free_modules_do_not_import_torch() -> None:
    """In a fresh interpreter (this one has torch loaded already), each torch-free module in turn, then a config
    composed and validated, leave torch and Lightning out of ``sys.modules``; the first step that pulls one in is
    named."""
    steps = [f"import {module}" for module in TORCH_FREE]
    steps.append("from experiments.config import compose; from experiments.validation import validate; "
                 "validate(compose(['model=fcn']))")
    code = "import json, sys\nheavy = {}\n" + "".join(
        f"{step}\nheavy[{step!r}] = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning'))\n"
        for step in steps) + "print(json.dumps(heavy))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(heavy) == steps
    assert {step: modules[:5] for step, modules in heavy.items() if modules} == {}


#: the modules that may deserialise pickles: the one safe loader (checkpoints: torch's weights-only unpickler; data
#: files: an allow-list unpickler)
SAFE_LOADERS = ("experiments.run.checkpoints", "experiments.run.unpickle")


def test_only_the_safe_loader_unpickles() -> None:
    """No other module calls ``pickle.load(s)``, ``torch.load`` or builds a ``pickle.Unpickler``: a checkpoint or data
    file from elsewhere must never run code of its own choosing."""
    found = []
    for module, path in module_files().items():
        if module in SAFE_LOADERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                    (node.value.id == "pickle" and node.attr in ("load", "loads", "Unpickler"))
                    or (node.value.id == "torch" and node.attr == "load")):
                found.append(f"{path.relative_to(SOURCE.parent)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, "unpickling outside experiments.run.checkpoints / run.unpickle:\n" + "\n".join(found)
