"""The layers' rules, checked on the source: only the Ray layer imports Ray, the numerics
import no framework, no module but the run record indexes summary.json's dicts, and the
run's modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "raylanczos"
MODULES = sorted(PACKAGE.rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def test_only_the_ray_layer_imports_ray():
    importers = [path.relative_to(PACKAGE).as_posix() for path in MODULES if "ray" in imported_roots(parsed(path))]
    assert importers and all(name.startswith("distributed/") for name in importers), importers


def test_the_numerics_import_no_framework_and_no_upper_layer():
    for path in sorted((PACKAGE / "numerics").glob("*.py")):
        modules = imported_modules(parsed(path))
        own = {name for name in modules if name.startswith("raylanczos")}
        assert own <= {"raylanczos.choices"} | {f"raylanczos.numerics.{p.stem}" for p in (PACKAGE / "numerics").glob("*.py")}, (path.name, own)
        assert not {name.split(".")[0] for name in modules} & {"ray", "jax", "tensorflow", "keras", "pyarrow"}, path.name


def test_the_loop_and_the_operators_know_no_ray_and_no_framework():
    for path in [PACKAGE / "run" / "loop.py", *sorted((PACKAGE / "operators").glob("*.py"))]:
        assert not imported_roots(parsed(path)) & {"ray", "jax", "tensorflow", "keras"}, path.name


def _names_summary(node: ast.AST) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "summary" in name


def test_summary_dicts_are_indexed_only_by_the_run_record():
    """Everything else reads a run through the record's fields (outputs/record.py)."""
    found = []
    for path in MODULES:
        if path == PACKAGE / "outputs" / "record.py":
            continue
        for node in ast.walk(parsed(path)):
            by_key = isinstance(node, ast.Subscript) and _names_summary(node.value) and isinstance(node.slice, ast.Constant)
            by_get = (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and _names_summary(node.func.value)
            )
            if by_key or by_get:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found


RUN_SPLIT = ("runner.py", "plan.py", "sink.py", "bases.py", "sweep.py")


@pytest.mark.parametrize("name", RUN_SPLIT)
def test_the_runs_modules_have_no_class_over_150_lines_and_no_function_over_60(name):
    """The run (what was one class of 283 lines) stays in small pieces."""
    path = PACKAGE / "run" / name
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno - node.lineno + 1 <= 150, (node.name, node.end_lineno - node.lineno + 1)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= 60, (node.name, node.end_lineno - node.lineno + 1)
