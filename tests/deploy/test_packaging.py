"""pyproject.toml declares what the code imports, keeps development tools out of what users
install, and the repository stands alone: nothing in tests/, bench/ or .ci/ reads ../shared."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.support import REPO

PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
LOCAL = {"receiver", "tests", "bench"}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[Any]) -> set[str]:
    names = set()
    for requirement in requirements:
        if isinstance(requirement, str):  # {include-group = ...} tables hold no name
            names.add(normalised(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]))
    return names


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside `try: ... except ImportError` (an optional import)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            return True
    return False


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (importorskip included), optional ones
    (inside `try/except ImportError`) left out."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names = set()
    for node in ast.walk(tree):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "importorskip" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found = [node.args[0].value]
        if found and not _guarded(node, parents):
            names |= {name.split(".")[0] for name in found}
    return names - set(sys.stdlib_module_names) - LOCAL


def distributions(modules: set[str]) -> dict[str, set[str]]:
    """Module -> the (normalised) distributions that provide it here."""
    provided = importlib.metadata.packages_distributions()
    missing = sorted(module for module in modules if module not in provided)
    assert not missing, f"imported but not installed here, cannot tell the distribution: {missing}"
    return {module: {normalised(d) for d in provided[module]} for module in modules}


def undeclared(folders: tuple[str, ...], declared: set[str]) -> dict[str, list[str]]:
    modules: dict[str, list[str]] = {}
    for path in python_files(*folders):
        for module in imported_modules(path):
            modules.setdefault(module, []).append(path.relative_to(REPO).as_posix())
    return {module: files for module, dists in distributions(set(modules)).items()
            if not dists & declared for files in [modules[module]]}


def test_the_receiver_imports_only_declared_dependencies() -> None:
    extras = PROJECT["optional-dependencies"]
    declared = requirement_names(PROJECT["dependencies"] + extras["geoip"] + extras["kafka"])
    assert undeclared(("receiver",), declared) == {}


def test_every_import_in_tests_and_bench_is_declared() -> None:
    extras = PROJECT["optional-dependencies"]
    groups = PYPROJECT["dependency-groups"]
    declared = requirement_names(PROJECT["dependencies"] + extras["geoip"] + extras["test"]
                                 + extras["kafka"] + groups["dev"])
    assert undeclared(("tests", "bench"), declared) == {}


def test_development_tools_are_a_dependency_group_not_an_extra() -> None:
    tools = {"ruff", "mypy", "msgpack-types", "types-pyyaml", "helm-python-sdk",
             "kubernetes-validate", "dockerfile-parse", "build", "twine", "check-wheel-contents"}
    in_extras = set().union(*map(requirement_names, PROJECT["optional-dependencies"].values()))
    assert not tools & in_extras
    assert tools <= requirement_names(PYPROJECT["dependency-groups"]["dev"])
    run_sh = (REPO / "tests" / "run.sh").read_text()
    assert "--group dev" in run_sh and "'pip>=25.1'" in (REPO / "deploy" / "venv.sh").read_text()


def test_license_is_an_spdx_expression_with_its_file() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]  # PEP 639
    (setuptools,) = PYPROJECT["build-system"]["requires"]
    minimum = re.fullmatch(r"setuptools>=(\d+)", setuptools)
    assert minimum and int(minimum[1]) >= 77, "license-files needs setuptools 77"
    assert "data-files" not in PYPROJECT["tool"]["setuptools"]  # lands outside the package


def test_nothing_in_tests_bench_or_ci_reads_the_shared_folder() -> None:
    """Only bench/peerbench.sh may (the peer harness), and it says so."""
    readers = []
    for path in [*python_files("tests", "bench"), *(REPO / ".ci").iterdir(),
                 *(REPO / "tests").glob("*.sh"), *(REPO / "bench").glob("*.sh")]:
        text = path.read_text()
        if path == Path(__file__):
            continue  # names the folder to look for it
        if path.suffix == ".py":
            tree = ast.parse(text)
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
                          and node.body and isinstance(node.body[0], ast.Expr)}
            strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                       and isinstance(node.value, str) and id(node) not in docstrings]
            if any("../shared" in s or s == "shared" for s in strings):
                readers.append(path)
        elif any("../shared" in line for line in text.splitlines() if not line.lstrip().startswith("#")):
            readers.append(path)
    assert [p.relative_to(REPO).as_posix() for p in readers] == ["bench/peerbench.sh"]
    assert "reads outside it" in (REPO / "bench" / "peerbench.sh").read_text()
