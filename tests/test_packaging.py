"""pyproject.toml declares what the code imports: a fresh ``pip install .`` must not miss a module.

Imports are read with ``ast`` from every module under ``src/experiments`` (function-level imports included,
as the commands import torch and Lightning lazily), so a new third-party import fails here until it is
declared, in the core dependencies or in an extra.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement  # packaging: a dependency of pytest
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # requires-python is 3.10: tomllib's backport there
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "experiments"

#: top-level import name -> distribution that provides it (where the two differ, and the ones that match)
DISTRIBUTION = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "hydra": "hydra-core",
    "hydra_plugins": "hydra-core",
    "lightning": "lightning",
    "torch": "torch",
    "torchvision": "torchvision",
    "omegaconf": "omegaconf",
    "torchmetrics": "torchmetrics",
    "tensorboard": "tensorboard",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "optuna": "optuna",
    "mlflow": "mlflow",
    "rich": "rich",
    "timm": "timm",
    "scipy": "scipy",
    "statsmodels": "statsmodels",
    "captum": "captum",
    "tqdm": "tqdm",
    "pandas": "pandas",
}


def pyproject() -> dict:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def requirements() -> tuple[list[Requirement], list[Requirement]]:
    """(core dependencies, every extra's), without the package's references to its own extras."""
    project = pyproject()["project"]
    core = [Requirement(r) for r in project["dependencies"]]
    extras = [Requirement(r) for group in project.get("optional-dependencies", {}).values() for r in group]
    return core, [r for r in extras if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> the files (relative to src/) that import it, stdlib and the package excluded."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("experiments", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(PACKAGE.parent)))
    return found


def test_the_import_scan_sees_the_lazy_imports() -> None:
    imports = third_party_imports()
    assert {"torch", "lightning", "hydra", "PIL", "numpy", "yaml"} <= set(imports)
    assert "experiments/train.py" in imports["lightning"]  # imported inside train(), not at module level


def test_every_imported_module_is_a_declared_dependency() -> None:
    core, extras = requirements()
    declared = {canonicalize_name(r.name) for r in core + extras}
    unmapped = sorted(set(third_party_imports()) - set(DISTRIBUTION))
    assert not unmapped, f"add the distribution providing {unmapped} to DISTRIBUTION in this test"
    missing = {
        DISTRIBUTION[module]: sorted(files)
        for module, files in third_party_imports().items()
        if canonicalize_name(DISTRIBUTION[module]) not in declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_lightning_is_pinned_to_the_minor_version_whose_internals_the_code_uses() -> None:
    """``trainer.fit(weights_only=...)`` needs 2.6; run/state.py and data/sampling.py use 2.6's internals."""
    (lightning,) = [r for r in requirements()[0] if r.name == "lightning"]
    assert lightning.specifier.contains("2.6.0") and not lightning.specifier.contains("2.5.9")
    assert not lightning.specifier.contains("2.7.0")


@pytest.mark.parametrize("requirement", requirements()[0], ids=str)
def test_the_installed_core_dependencies_satisfy_the_declared_bounds(requirement: Requirement) -> None:
    installed = metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), f"{requirement.name} {installed}"


def test_the_dev_extra_has_the_parallel_test_runner() -> None:
    dev = {canonicalize_name(Requirement(r).name) for r in pyproject()["project"]["optional-dependencies"]["dev"]}
    assert {"pytest", "pytest-xdist", "ruff"} <= dev
