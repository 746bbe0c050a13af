"""Rules of the test suite itself, read from the test sources (no test is run)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_slow(node: ast.AST) -> bool:
    return "mark.slow" in ast.unparse(node)


def slow_tests_without_docstring(path: Path) -> list[str]:
    """The tests of ``path`` marked slow (by decorator or the module's ``pytestmark``) that have no
    docstring saying what they prove."""
    tree = ast.parse(path.read_text())
    module_slow = any(
        isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n.targets[0]) and _is_slow(n.value)
        for n in tree.body
    )
    return [
        f"{path.name}::{n.name}"
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
        if (module_slow or any(_is_slow(d) for d in n.decorator_list)) and not ast.get_docstring(n)
    ]


def test_every_slow_test_says_what_it_proves():
    """A slow test is a statistical check that costs minutes: its docstring says what it proves."""
    silent = [name for path in sorted(TESTS.glob("test_*.py")) for name in slow_tests_without_docstring(path)]
    assert not silent, silent


def test_the_rule_sees_a_silent_slow_test(tmp_path):
    """The check itself: a decorated and a module-marked slow test without docstrings are found,
    a documented one is not."""
    (tmp_path / "test_a.py").write_text(
        "import pytest\n\n@pytest.mark.slow\ndef test_x():\n    pass\n\n"
        '@pytest.mark.slow\ndef test_y():\n    """Proves y."""\n'
    )
    (tmp_path / "test_b.py").write_text(
        "import pytest\npytestmark = pytest.mark.slow\n\ndef test_z():\n    pass\n"
    )
    assert slow_tests_without_docstring(tmp_path / "test_a.py") == ["test_a.py::test_x"]
    assert slow_tests_without_docstring(tmp_path / "test_b.py") == ["test_b.py::test_z"]
