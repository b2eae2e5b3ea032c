"""The import directions of DESIGN.md, checked by parsing every module's imports, tests and benchmarks included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["state", "handlers", "steps", "worker", "bot", "cli", "sandbox"]
ALLOWED = {
    "cli": {"cli", "bot", "worker", "handlers", "state", "sandbox"},
    "bot": {"bot", "handlers", "state"},
    "worker": {"worker", "steps", "state"},
    "handlers": {"handlers", "state"},
    "steps": {"steps", "state"},
    "state": {"state"},
    "sandbox": {"sandbox", "state"},
    "tests": {"tests", *PACKAGES},
    "bench": {"bench", *PACKAGES},
}
# Only the demo's entry in cli may reach into the sandbox: product code never plays the world around it.
SANDBOX_ENTRY = {"cli/main.py"}
CORE = {"state/machine.py", "state/models.py", "state/report.py", "state/errors.py", "state/actions.py",
        "state/announce.py", "state/watch.py", "state/watching.py"}
# handlers may build Block Kit with slack_sdk's models (pure objects), never call Slack.
THIRD_PARTY_BANNED = {"handlers": {"psycopg", "redis", "rq", "slack_bolt"},
                      "steps": {"redis", "rq", "slack_bolt", "slack_sdk"},
                      "state": {"psycopg", "rq", "slack_bolt", "slack_sdk"}}


def imports(path: Path) -> set[str]:
    """Top-level names a module imports, with pgmove.<package> counted as <package>."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            found.add(parts[1] if parts[0] == "pgmove" and len(parts) > 1 else parts[0])
    return found


def unqualified(path: Path) -> set[str]:
    """Our packages imported by their bare name: a second copy of every module (and of every enum) in memory."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("**/*.py"))


def test_imports_point_inward():
    """Every package, tests and benchmarks included, imports only what DESIGN.md lets it."""
    for package, allowed in ALLOWED.items():
        for path in modules(package):
            rel = str(path.relative_to(ROOT))
            ours = imports(path) & {*PACKAGES, "tests", "bench"}
            if rel in SANDBOX_ENTRY:
                allowed = allowed | {"sandbox"}
            elif package == "cli":
                allowed = allowed - {"sandbox"}
            assert ours <= allowed, f"{rel} imports {ours - allowed}"
            banned = imports(path) & THIRD_PARTY_BANNED.get(package, set())
            assert not banned, f"{rel} imports {banned}"


def test_our_packages_are_imported_by_their_pgmove_name():
    """`from state...` would load a second copy of a module beside pgmove.state's; only pgmove.* is installed."""
    for package in [*PACKAGES, "tests", "bench"]:
        for path in modules(package):
            assert not unqualified(path), f"{path.relative_to(ROOT)} imports {unqualified(path)} without pgmove."


def test_nothing_imports_the_tests():
    """Tests use the product and the sandbox; nothing uses the tests."""
    for package in [*PACKAGES, "bench"]:
        for path in modules(package):
            assert "tests" not in imports(path), f"{path.relative_to(ROOT)} imports tests"


def test_cli_composes_and_never_reaches_the_servers():
    """cli wires bot, worker and handlers together; talking to PostgreSQL is the steps' business, through a worker."""
    for path in modules("cli"):
        assert not imports(path) & {"steps", "psycopg"}, f"{path.relative_to(ROOT)} imports {imports(path) & {'steps', 'psycopg'}}"


def test_only_the_store_imports_redis_and_the_core_is_stdlib_and_pydantic():
    """In every product module, redis is the store's alone; the core needs nothing but the standard library and pydantic."""
    for package in ALLOWED:
        if package in ("tests", "bench", "sandbox"):
            continue
        for path in modules(package):
            rel = str(path.relative_to(ROOT))
            if "redis" in imports(path):
                assert rel == "state/store.py", f"{rel} imports redis"
    for path in modules("state"):
        rel = str(path.relative_to(ROOT))
        if rel in CORE:
            assert imports(path) <= {"__future__", "state", "pydantic", "datetime", "enum", "typing", "hashlib",
                                     "json", "secrets", "dataclasses"}, rel


def test_only_the_worker_reaches_the_cutover_step():
    """Cutover is the point of no return: no other step imports it (verification's write test lives in steps/smoke.py)."""
    for path in modules("steps"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                named = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                assert "pgmove.steps.cutover" not in named or path.name == "cutover.py", \
                    f"{path.relative_to(ROOT)} imports the cutover step"
