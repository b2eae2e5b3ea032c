"""pgmove as a user installs it: a wheel built from pyproject (no licence warning), installed away from the
checkout, runs `pgmove demo` on its own (throwaway servers and the Slack stand-in ship in the package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.services import REPO

pytestmark = pytest.mark.slow


def test_the_installed_package_runs_the_demo_away_from_the_checkout(tmp_path: Path) -> None:
    """`pip wheel .` says nothing about the licence; installed into a bare folder and run from elsewhere,
    `python -m pgmove.cli demo` imports only the installed copy and succeeds."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    said = (built.stdout + built.stderr).lower()
    assert "license" not in said.replace("license-file", ""), [line for line in said.splitlines() if "license" in line]
    wheel = next((tmp_path / "dist").glob("pgmove-*.whl"))
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import pgmove.sandbox.demo as d; print(d.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    demo = subprocess.run([sys.executable, "-m", "pgmove.cli", "demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert demo.returncode == 0 and "demo succeeded" in demo.stdout + demo.stderr, (demo.stdout + demo.stderr)[-3000:]
