"""What a worker process needs, composed once by the entry point (RQ job functions reach it from here)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from rq import Queue

from pgmove.state.config import Config
from pgmove.state.errors import StepFailed
from pgmove.state.store import Store
from pgmove.steps.connect import Endpoint


@dataclass
class Runtime:
    config: Config
    store: Store
    queue: Queue
    worker_id: str

    def endpoint(self, server: str) -> Endpoint:
        """The server as this worker's configuration has it; what is missing fails the step saying what to set."""
        cfg = self.config.servers.get(server)
        if cfg is None:
            known = ", ".join(sorted(self.config.servers)) or "none"
            raise StepFailed(f"This worker's configuration has no server {server} (it knows {known}): give every "
                             "worker and the bot the same configuration file, then retry.")
        password = self.config.password_for(server)
        if cfg.password_env and not password:
            raise StepFailed(f"{cfg.password_env} is not set in this worker's environment: the password of {server} "
                             "comes from it. Set it where the worker runs, restart the worker, then retry.")
        return Endpoint(name=server, dsn=cfg.dsn, password=password, app_roles=tuple(cfg.app_roles))


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no worker runtime installed: jobs run only inside `pgmove worker`")
    return _current


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
