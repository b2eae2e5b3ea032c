"""The import directions of DESIGN.md, checked by parsing every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["state", "handlers", "steps", "worker", "bot", "cli"]
ALLOWED = {
    "cli": {"cli", "bot", "worker", "handlers", "state", "steps"},
    "bot": {"bot", "handlers", "state"},
    "worker": {"worker", "steps", "state"},
    "handlers": {"handlers", "state"},
    "steps": {"steps", "state"},
    "state": {"state"},
}
CORE = {"state/machine.py", "state/models.py", "state/errors.py", "state/actions.py"}
# handlers may build Block Kit with slack_sdk's models (pure objects), never call Slack.
THIRD_PARTY_BANNED = {"handlers": {"psycopg", "redis", "rq", "slack_bolt"},
                      "steps": {"redis", "rq", "slack_bolt", "slack_sdk"},
                      "state": {"psycopg", "rq", "slack_bolt", "slack_sdk"}}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_imports_point_inward():
    for package in PACKAGES:
        for path in (ROOT / package).glob("**/*.py"):
            ours = imports(path) & set(PACKAGES)
            assert ours <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {ours - ALLOWED[package]}"
            banned = imports(path) & THIRD_PARTY_BANNED.get(package, set())
            assert not banned, f"{path.relative_to(ROOT)} imports {banned}"


def test_only_the_store_imports_redis_and_the_core_is_stdlib_and_pydantic():
    for path in (ROOT / "state").glob("*.py"):
        rel = str(path.relative_to(ROOT))
        if "redis" in imports(path):
            assert rel == "state/store.py"
        if rel in CORE:
            assert imports(path) <= {"__future__", "state", "pydantic", "datetime", "enum", "typing", "hashlib",
                                     "json", "secrets", "dataclasses"}, rel
