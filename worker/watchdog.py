"""A paused pooler's guard that outlives the worker: started before the first PAUSE, in a session of its own, it
gives the migration's paused poolers back (pointed back first, per the record) once the worker's lease on the
server lapses, and exits when nothing is recorded as paused any more. With a single worker killed mid-switch and
nothing restarting it, the app would otherwise wait on the pooler until a worker runs again.

Its secrets (the Redis URL, the poolers' admin passwords) come on stdin, never on its command line or in the
environment it starts with.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

from pgmove.state.config import Config
from pgmove.state.errors import StepFailed
from pgmove.state.store import Store
from pgmove.worker.poolers import release_orphans, secret_env
from pgmove.worker.runtime import Runtime

log = logging.getLogger("pgmove.watchdog")

POLL_SECONDS = 1.0
GIVE_UP_SECONDS = 24 * 3600.0  # a pooler nobody can reach for a day is beyond a watchdog; the reapers keep trying
BLIND_SECONDS = 120.0  # Redis gone this long: without the record and the lock it can do nothing safely


def start(rt: Runtime, migration_id: str, server: str, token: str) -> None:
    """Start the guard for `migration_id`, whose worker holds `server`'s lock with `token`; returns once it runs."""
    config = rt.config.model_dump(mode="json")
    config["redis_password_env"] = None  # redis_url already carries it
    passwords = {p.password_env: os.environ[p.password_env] for p in rt.config.poolers.values()
                 if p.password_env and p.password_env in os.environ}
    job = {"config": config, "passwords": passwords, "migration": migration_id, "server": server, "token": token}
    hidden = secret_env(rt.config)
    env = {k: v for k, v in os.environ.items() if k not in hidden and k != "PGPASSWORD"}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pgmove.worker.watchdog"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, close_fds=True,
                                start_new_session=True)
        proc.communicate(json.dumps(job).encode(), timeout=30)  # it forks and its first process exits at once
    except (OSError, subprocess.SubprocessError) as exc:
        raise StepFailed(f"the pooler watchdog could not start ({exc}); nothing was paused") from None
    if proc.returncode != 0:
        raise StepFailed(f"the pooler watchdog could not start (status {proc.returncode}); nothing was paused")


def watch(job: dict[str, Any]) -> None:
    os.environ.update(job["passwords"])  # read by Config.pooler_password; set after exec, not in /proc/PID/environ
    config = Config.model_validate(job["config"])
    store = Store.from_url(config.redis_url)
    deadline = time.monotonic() + GIVE_UP_SECONDS
    seen = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - seen < BLIND_SECONDS:
        try:
            m = store.get(job["migration"])
            seen = time.monotonic()
            if m is None or not m.poolers_paused:
                return  # the switch ended (resumed on the target or given back), or a reaper gave it back
            if store.lock_holder(job["server"]) != job["token"]:
                # The worker's lease lapsed: release_orphans takes the lock first, so a live worker is never raced.
                release_orphans(store, config, "pgmove-watchdog", only=job["migration"])
        except Exception:  # Redis or a pooler unreachable for now: try again, like the reaper
            log.warning("watchdog pass failed", exc_info=True)
        time.sleep(POLL_SECONDS)


def main() -> None:
    job = json.loads(sys.stdin.read())
    if os.fork() > 0:  # the worker waits only for this first process; the guard is reparented and lives on
        os._exit(0)
    watch(job)


if __name__ == "__main__":
    main()
