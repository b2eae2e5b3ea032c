"""The only worker is SIGKILLed mid-switch, just after the repoint, and nothing restarts it: the watchdog it
started before PAUSE points the pooler back at the source and resumes it once the lease lapses, then exits."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pgmove.sandbox.servers import wait_until
from tests.fixtures.services import _driver, pooler_config
from tests.integration.test_source_after_verification import _verified

REPO = str(Path(__file__).resolve().parents[2])
# Under pytest-xdist each test process has its own name, which the workers it starts (and their watchdogs) inherit.
_THIS_PROCESS = os.environ.get("PYTEST_XDIST_WORKER")


def _watchdogs() -> dict[int, tuple[bytes, bytes]]:
    """This checkout's and this test process's pooler watchdogs: pid -> (command line, environment) as the kernel shows them."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        entries = set(environ.split(b"\0"))
        ours = _THIS_PROCESS is None or f"PYTEST_XDIST_WORKER={_THIS_PROCESS}".encode() in entries
        if b"pgmove.worker.watchdog" in cmdline and f"PYTHONPATH={REPO}".encode() in entries and ours:
            found[int(pid)] = (cmdline, environ)
    return found


def test_a_lone_worker_killed_after_the_repoint_is_covered_by_its_watchdog(tmp_path, redis_server, source, target, passwords, pgbouncer):  # type: ignore[no-untyped-def]
    """With no worker left, the pooler is pointed back at the source and resumed within the lease plus a margin;
    the watchdog carries no password on its command line or in its environment, and exits once it is done."""
    marker, script = tmp_path / "killed-once", tmp_path / "repoint.py"
    script.write_text(f"""#!{sys.executable}
import os, re, signal, psycopg
db = os.environ["PGMOVE_POOLER_DATABASE"]
path = {str(pgbouncer.databases_file)!r}
text = re.sub(r"(?m)^" + db + r" = .*$", f"{{db}} = host={{os.environ['PGHOST']}} port={{os.environ['PGPORT']}} "
              f"dbname={{os.environ['PGDATABASE']}}", open(path).read())
open(path, "w").write(text)
with psycopg.connect({pgbouncer.admin_dsn()!r}, password={pgbouncer.admin_password!r}, autocommit=True,
                     prepare_threshold=None) as c:
    c.execute("RELOAD")
if not os.path.exists({str(marker)!r}):
    open({str(marker)!r}, "w").close()
    os.kill(os.getppid(), signal.SIGKILL)
""")
    script.chmod(0o755)
    gen = _driver(tmp_path, redis_server, source, target, passwords,
                  pooler_config(pgbouncer, databases_file=None, repoint_command=[str(script)]),
                  {"PGMOVE_POOLER_PASSWORD": pgbouncer.admin_password})
    pg = next(gen)
    earlier: set[int] = set()
    try:
        _verified(pg)
        earlier = set(_watchdogs())  # another test's, still waiting out its Redis going away
        assert pg.do("U_ALICE", "cutover prod-old").returncode == 0
        assert pg.do("U_BOB", "approve prod-old").returncode == 0
        wait_until(marker.exists, 120, "the repoint ran and killed the worker")
        wait_until(lambda: all(w.poll() is not None for w in pg.workers), 10, "the worker died")
        assert pgbouncer.database("appdb")["port"] == target.port
        guards = {pid: seen for pid, seen in _watchdogs().items() if pid not in earlier}
        assert len(guards) == 1, guards
        for cmdline, environ in guards.values():
            assert pgbouncer.admin_password.encode() not in cmdline + environ
            assert passwords.source_pgmove.encode() not in cmdline + environ
        killed = time.monotonic()
        wait_until(lambda: pgbouncer.database("appdb")["paused"] == 0, 30 + 20, "the watchdog resumed the pooler")
        row = pgbouncer.database("appdb")
        assert row["port"] == source.port, row
        wait_until(lambda: not set(guards) & set(_watchdogs()), 15, "the watchdog exited")
        st = json.loads(pg.do("U_ALICE", "status prod-old", "--json").stdout)
        assert st["poolers_paused"] == [], st["poolers_paused"]
        print(f"resumed on the source {time.monotonic() - killed:.1f}s after the worker died")
    finally:
        for pid in set(_watchdogs()) - earlier:
            os.kill(pid, 9)
        try:
            next(gen)
        except StopIteration:
            pass
