"""The suite itself: every test checks something.

A test asserts, expects an exception or a warning, or calls a helper that
asserts (found here, not listed by hand: a module-level function of the
tests whose body asserts).
"""

from __future__ import annotations

import ast
import pathlib

HERE = pathlib.Path(__file__).parent
CHECKS = {"raises", "warns", "fail"}  # pytest.raises, pytest.warns, pytest.fail


def _asserts(node: ast.AST, helpers: set[str]) -> bool:
    for child in ast.walk(node):
        if isinstance(child, ast.Assert):
            return True
        if isinstance(child, ast.Call):
            called = child.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            method = isinstance(called, ast.Attribute)
            # pytest.raises and the like; pytester's assert_outcomes and the like.
            if name in helpers or method and (name in CHECKS or name.startswith("assert_")):
                return True
    return False


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_every_test_checks_something() -> None:
    trees = {path: ast.parse(path.read_text()) for path in sorted(HERE.glob("*.py"))}
    helpers: set[str] = set()
    for _ in range(3):  # a helper may assert through another helper
        for tree in trees.values():
            helpers |= {
                f.name
                for f in _functions(tree)
                if not f.name.startswith("test_") and _asserts(f, helpers)
            }
    hollow = [
        f"{path.name}::{function.name}"
        for path, tree in trees.items()
        for function in _functions(tree)
        if function.name.startswith("test_") and not _asserts(function, helpers)
    ]
    assert hollow == []
