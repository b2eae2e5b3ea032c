"""What a worker process needs, composed once by the entry point (RQ job functions reach it from here)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from rq import Queue

from pgmove.state.config import Config
from pgmove.state.store import Store
from pgmove.steps.connect import Endpoint


@dataclass
class Runtime:
    config: Config
    store: Store
    queue: Queue
    worker_id: str

    def endpoint(self, server: str) -> Endpoint:
        cfg = self.config.servers[server]
        return Endpoint(name=server, dsn=cfg.dsn, password=self.config.password_for(server), app_roles=tuple(cfg.app_roles))


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
