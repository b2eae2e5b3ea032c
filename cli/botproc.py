"""`pgmove bot` as two processes: the edge (bot.app) and the responder (bot.responder + bot.notifier).

Slack gives 3 seconds for an ack. In one Python process the ack path competes for the interpreter
with everything else the bot does; so the edge only persists and acks, and the work runs in a second
process that reads the same Redis inbox.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading

from pgmove.bot.app import web_client
from pgmove.bot.notifier import Notifier
from pgmove.bot.responder import Responder
from pgmove.bot.settings import SlackSettings
from pgmove.cli import logs
from pgmove.handlers.commands import Deps
from pgmove.state.config import load_config
from pgmove.state.errors import Unavailable
from pgmove.state.store import Store
from pgmove.worker.queue import enqueuer, make_queue


def start_responder(config_path: str | None, log_level: str) -> multiprocessing.process.BaseProcess:
    """Spawned, so it shares nothing but Redis with the edge."""
    process = multiprocessing.get_context("spawn").Process(
        target=responder_main, args=(config_path, log_level), name="pgmove-responder", daemon=True)
    process.start()
    return process


def responder_main(config_path: str | None, log_level: str) -> None:
    try:
        _respond(config_path, log_level)
    except Unavailable as exc:  # one line, not a traceback a minute; the edge restarts it with a backoff
        logging.getLogger("pgmove.bot").error("responder stopped: %s", exc.message)
        sys.exit(4)


def _respond(config_path: str | None, log_level: str) -> None:
    os.nice(10)  # the edge's acks are what Slack times; the responder's answers can wait a few ms
    config = load_config(config_path)
    settings = SlackSettings.from_env()
    logs.configure(log_level, config.secrets() + settings.secrets())
    store = Store.from_config(config)
    deps = Deps(config=config, store=store, enqueue=enqueuer(make_queue(store, config.queue_name)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    notifier = Notifier(store, web_client(settings), config)
    threading.Thread(target=notifier.run_forever, args=(stop,), name="notifier", daemon=True).start()
    Responder(deps).run_forever(stop)
