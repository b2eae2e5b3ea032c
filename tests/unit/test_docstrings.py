"""Tests as documentation: every test says in a sentence what behaviour it proves, checked by parsing every test module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collected(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions pytest collects from a module: module-level and in classes, named test*."""
    return [node for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def undocumented(path: Path) -> list[str]:
    """Test functions of a module with no docstring, one that is not a sentence, or one that only spells out the name."""
    found = []
    for node in collected(path):
        doc = (ast.get_docstring(node) or "").strip()
        if not doc:
            found.append(f"{node.name}: no docstring")
        elif not doc.endswith("."):
            found.append(f"{node.name}: the docstring is not a sentence ending in a full stop")
        elif words(doc) == words(node.name.removeprefix("test")):
            found.append(f"{node.name}: the docstring repeats the name; say what the test proves")
    return found


def test_every_test_says_what_it_proves():
    """A test function added under tests/ without a sentence saying what it proves fails here, naming it."""
    modules = sorted((ROOT / "tests").glob("**/test_*.py"))
    assert len(modules) > 30, "no test modules found: the check proves nothing"
    missing = [f"{path.relative_to(ROOT)}::{problem}" for path in modules for problem in undocumented(path)]
    assert missing == [], "\n".join(missing)


def test_the_check_catches_a_test_without_a_docstring_and_one_that_restates_its_name(tmp_path):
    """The rule is live: a bare test, a fragment and a name spelled out as a sentence are each reported."""
    module = tmp_path / "test_sample.py"
    module.write_text('def test_bare():\n    pass\n\n\n'
                      'def test_fragment():\n    """some words"""\n\n\n'
                      'def test_a_plan_is_refused():\n    """A plan is refused."""\n\n\n'
                      'class TestGroup:\n    def test_in_a_class(self):\n        pass\n\n\n'
                      'def test_fine():\n    """An empty plan is refused with the usage text."""\n')
    assert [problem.split(":")[0] for problem in undocumented(module)] == [
        "test_bare", "test_fragment", "test_a_plan_is_refused", "test_in_a_class"]
