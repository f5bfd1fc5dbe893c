"""One field specification: every document field name is written once in receiver/parse (so
renaming a field is one edit), the generated code reads only public names of the table's
module, and no two parse modules import each other."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from receiver.parse import compiled, fields

PARSE = Path(__file__).resolve().parents[2] / "receiver" / "parse"
# `source.ip`, `haproxy.http.request.captured_headers`, `@timestamp` is not dotted: fine.
_FIELD_NAME = re.compile(r"[a-z@][a-z0-9_]*(?:\.[a-z0-9_@]+)+")


def _strings(tree: ast.Module) -> list[ast.Constant]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]


def test_every_field_name_is_written_once() -> None:
    where = defaultdict(list)
    for path in sorted(PARSE.glob("*.py")):
        for node in _strings(ast.parse(path.read_text())):
            if isinstance(node.value, str) and _FIELD_NAME.fullmatch(node.value):
                where[node.value].append(f"{path.name}:{node.lineno}")
    assert len(where) > 60
    repeated = {name: places for name, places in where.items() if len(places) > 1}
    assert not repeated


def test_generated_code_reads_only_public_names_of_the_table() -> None:
    source = (PARSE / "compiled.py").read_text()
    used = set(re.findall(r"\bf\.([A-Za-z_]\w*)", source))
    assert used and not [name for name in used if name.startswith("_")]
    assert all(hasattr(fields, name) for name in used)
    mapped = compiled.compile_shape(("ci", "ST", "zz"))
    doc: dict[str, object] = {}
    mapped(["10.0.0.1", "200", "v"], doc, fields.Collected(), _Naming(), True)
    assert doc == {"source.address": "10.0.0.1", "source.ip": "10.0.0.1",
                   "related.ip": ["10.0.0.1"], "http.response.status_code": 200,
                   "haproxy.zz": "v"}


class _Naming:
    def __init__(self) -> None:
        self.raw_names = False
        self.request_names: list[str] = []
        self.response_names: list[str] = []


def test_no_import_circle_between_parse_modules() -> None:
    imports: dict[str, set[str]] = {}
    for path in PARSE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("receiver.parse."):
                    found.add(node.module.rsplit(".", 1)[1])
                elif node.module == "receiver.parse":
                    found.update(alias.name for alias in node.names)
        imports[path.stem] = found - {path.stem}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for name in imports.get(start, ()):
            if name == goal or (name not in seen and reaches(name, goal, seen | {name})):
                return True
        return False

    circles = [name for name in imports if name != "__init__" and reaches(name, name, set())]
    assert not circles
