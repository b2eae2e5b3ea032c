"""Say what is happening: no worker running is said (reply, status, --wait once); --wait shows the events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgmove.cli.main import pgmove_version
from pgmove.sandbox.servers import wait_until
from pgmove.state.store import Store
from tests.fixtures.services import PGMOVE, cli_env, cli_users, pgmove_cli

NO_WORKER = "no worker is running"


@pytest.fixture
def config(redis_server, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "pgmove.toml"
    path.write_text(f'redis_url = "{redis_server.url}"\nlease_seconds = 2\n[access]\noperators = ["U_ALICE"]\n'
                    f'approvers = ["U_BOB"]\n{cli_users()}[servers.prod-old]\ndsn = "host=127.0.0.1 port=1 user=pgmove"\n'
                    '[servers.prod-new]\ndsn = "host=127.0.0.1 port=2 user=pgmove"\n')
    return path


@pytest.fixture
def worker(config, tmp_path) -> Iterator[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*PGMOVE, "--config", str(config), "worker", "--name", "w1"], env=cli_env(),
                            stdout=log, stderr=log, start_new_session=True)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_with_no_worker_plan_status_and_wait_say_nothing_will_run(config):  # type: ignore[no-untyped-def]
    """No heartbeat: the plan's reply and status say so at once, and --wait prints it once, as its first line."""
    planned = pgmove_cli(config, "do", "--as", "U_ALICE", "plan prod-old prod-new")
    assert planned.returncode == 0 and NO_WORKER in planned.stdout, planned.stdout
    assert "preflight checks are running" not in planned.stdout
    assert NO_WORKER in pgmove_cli(config, "do", "--as", "U_ALICE", "status prod-old").stdout
    waited = subprocess.Popen([*PGMOVE, "--config", str(config), "do", "--as", "U_ALICE", "--wait", "--timeout", "30",
                               "status prod-old"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Its first line, said on the first pass before any blocking read (no wall time asserted: the machine is shared).
    line = wait_until(lambda: waited.stderr.readline() if waited.stderr else None, 30, "a line from --wait")
    assert NO_WORKER in line
    waited.terminate()
    _, rest = waited.communicate(timeout=10)
    assert NO_WORKER not in rest  # once


def test_a_running_worker_prints_a_start_line_and_its_heartbeat_silences_the_note(config, worker, redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """A worker says what it is and where; while it beats, replies do not claim nothing runs; once it stops, they do."""
    store = Store.from_url(redis_server.url)
    wait_until(lambda: store.workers_seen(10), 20, "the worker's heartbeat")
    start = (tmp_path / "worker.log").read_text()
    assert f"worker w1: Redis {redis_server.url}, queue pgmove, servers prod-new, prod-old" in start, start
    assert start.startswith(f"pgmove {pgmove_version()} worker w1"), start
    planned = pgmove_cli(config, "do", "--as", "U_ALICE", "plan prod-old prod-new")
    assert planned.returncode == 0 and NO_WORKER not in planned.stdout, planned.stdout
    worker.terminate()
    worker.wait(30)
    assert store.workers_seen(10) == []
    replanned = pgmove_cli(config, "do", "--as", "U_ALICE", "plan prod-old prod-new --jobs 3")
    assert NO_WORKER in replanned.stdout, replanned.stdout


def test_wait_with_json_prints_the_events_on_stderr_and_only_json_on_stdout(config, worker):  # type: ignore[no-untyped-def]
    """The preflight's start and end are lines on stderr as they happen; stdout stays one JSON document."""
    done = pgmove_cli(config, "do", "--as", "U_ALICE", "--wait", "--json", "plan prod-old prod-new")
    assert done.returncode == 1  # the servers are not there: the preflight fails, and says so
    assert json.loads(done.stdout)["state"] == "failed"
    lines = done.stderr.splitlines()
    assert any("preflight started" in line for line in lines), done.stderr
    assert any("(planned -> failed)" in line for line in lines), done.stderr


def test_health_says_whether_redis_answers_and_this_hosts_worker_beats(config, redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """The image's HEALTHCHECK: 0 with Redis up, 1 when this host's worker is silent, 4 with Redis down."""
    assert pgmove_cli(config, "health").returncode == 0
    silent = pgmove_cli(config, "health", "--worker-here")
    assert silent.returncode == 1 and "no worker on" in silent.stderr
    Store.from_url(redis_server.url).beat(f"{os.uname().nodename}:1")
    assert pgmove_cli(config, "health", "--worker-here").returncode == 0
    redis_server.stop()
    assert pgmove_cli(config, "health").returncode == 4
