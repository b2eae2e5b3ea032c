"""The demo app's own pause and resume, as a team would script them: the pause hook asks the app's writer to stop
and waits until it says no insert is in flight; the resume hook lets it go on, wherever pgmove says writes resume.
They talk to the writer through two files, and see no password (pgmove gives them none)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAUSE = """import pathlib, sys, time
flag, ack = pathlib.Path(FLAG), pathlib.Path(ACK)
flag.touch()
deadline = time.monotonic() + 10
while not ack.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
if not ack.exists():
    print('the app writer did not stop within 10 s')
    sys.exit(1)
print('app writer stopped: ' + ack.read_text())
"""
RESUME = """import os, pathlib
pathlib.Path(ACK).unlink(missing_ok=True)
pathlib.Path(FLAG).unlink(missing_ok=True)
print('app writer started again, its writes going to ' + os.environ['PGMOVE_SERVER'] + ' through PgBouncer')
"""


def pause_files(base: Path) -> tuple[Path, Path]:
    """The flag the pause hook raises, and the writer's answer that it stopped."""
    return base / "app-pause.flag", base / "app-pause.ack"


def write_hooks(base: Path) -> dict[str, str]:
    """The two hook programs under `base`, and the TOML lines each server's section takes to run them."""
    flag, ack = pause_files(base)
    paths = {}
    for name, body in (("pause-app", PAUSE), ("resume-app", RESUME)):
        path = base / name
        path.write_text(f"#!{sys.executable}\n" + body.replace("FLAG", repr(str(flag))).replace("ACK", repr(str(ack))))
        path.chmod(0o755)
        paths[name] = json.dumps([str(path)])
    resume = f"resume_app_hook = {paths['resume-app']}\n"
    return {"prod-old": f"pause_app_hook = {paths['pause-app']}\n{resume}", "prod-new": resume}


def with_hooks(config: str, hooks: dict[str, str]) -> str:
    """`config` with each server's hook lines at the end of its section (sections end at a blank line)."""
    for server, lines in hooks.items():
        head, start, rest = config.partition(f"[servers.{server}]\n")
        body, blank, tail = rest.partition("\n\n")
        config = f"{head}{start}{body}\n{lines}{blank}{tail}"
    return config
