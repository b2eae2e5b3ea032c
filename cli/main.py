"""`pgmove --config FILE do|worker|demo ...`: the contract in DESIGN.md."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from pgmove.cli import logs
from pgmove.handlers import views
from pgmove.handlers.commands import Deps, handle
from pgmove.handlers.reply import Reply
from pgmove.state.actions import step_due
from pgmove.state.config import Config, load_config
from pgmove.state.errors import PgmoveError
from pgmove.state.machine import RESTING, State
from pgmove.state.models import Migration
from pgmove.state.store import Enqueue, Store
from pgmove.worker.queue import enqueuer, make_queue

# No locals in tracebacks: they would print the configuration, the Redis password in redis_url included.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Move a PostgreSQL server, two people, one runbook.")

EXIT_REFUSED, EXIT_FAILED, EXIT_TIMEOUT = 2, 1, 3


class Context:
    def __init__(self, config_path: Path | None, log_level: str) -> None:
        self.config_path, self.log_level = config_path, log_level

    def config(self) -> Config:
        try:
            config = load_config(self.config_path)
        except PgmoveError as exc:
            typer.echo(exc.message, err=True)
            raise typer.Exit(EXIT_REFUSED) from None
        logs.configure(self.log_level, config.secrets())
        return config


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", envvar="PGMOVE_CONFIG", help="the TOML configuration file")] = None,  # noqa: UP045
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "WARNING",
) -> None:
    ctx.obj = Context(config, log_level.upper())


@app.command("do")
def do(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help='the /pgmove command text, e.g. "plan prod-old prod-new"')],
    as_user: Annotated[str, typer.Option("--as", help="the user id the command runs as")],
    wait: Annotated[bool, typer.Option("--wait", help="return when the migration rests")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the migration as JSON")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds --wait waits at most")] = 3600.0,
) -> None:
    """Run any /pgmove command as USER through the same handlers the bot uses."""
    config = ctx.obj.config()
    store = Store.from_config(config)
    deps = Deps(config=config, store=store, enqueue=enqueuer(make_queue(store, config.queue_name)))
    reply = handle(deps, as_user, text)
    if not reply.ok:
        _emit(reply, None, as_json)
        raise typer.Exit(EXIT_REFUSED)
    migration = reply.migration
    if wait and migration is not None:
        migration = wait_until_resting(store, migration, timeout, echo=not as_json, enqueue=deps.enqueue)
        if migration is None:
            typer.echo(f"timed out after {timeout:g}s; the migration goes on: `pgmove do --as {as_user} \"status ...\"`", err=True)
            raise typer.Exit(EXIT_TIMEOUT)
    _emit(reply, migration, as_json, waited=wait)
    if migration is not None and wait and migration.state in (State.FAILED, State.VERIFY_FAILED):
        raise typer.Exit(EXIT_FAILED)


def wait_until_resting(store: Store, m: Migration, timeout: float, echo: bool,
                       enqueue: Enqueue | None = None) -> Migration | None:
    """Follow the event stream until nothing happens without a person (or the timeout)."""
    from pgmove.worker.reaper import reap  # the waiting client also notices a dead worker

    deadline = time.monotonic() + timeout
    cursor = store.last_event_id(m.id) or "0-0"
    live_cursor = store.last_live_id(m.id) or "0-0"
    last_reap = 0.0
    while time.monotonic() < deadline:
        current = store.get(m.id)
        if current is not None and current.state in RESTING and step_due(current) is None:
            return current
        for event in store.wait_events(m.id, cursor, block_ms=500, live_after=live_cursor):
            if event.data.get("tick"):
                live_cursor = event.id or live_cursor
            else:
                cursor = event.id or cursor
            if echo:
                typer.echo(views.for_terminal(views.event_line(event)), err=True)
        if time.monotonic() - last_reap > 2:
            reap(store, "pgmove-do", enqueue)  # a window it finds dead unfreezes: a worker must be asked
            last_reap = time.monotonic()
    return None


def _emit(reply: Reply, migration: Migration | None, as_json: bool, waited: bool = False) -> None:
    if as_json:
        payload = migration or reply.migration
        typer.echo(payload.model_dump_json(indent=2) if payload else reply.model_dump_json(indent=2, exclude_none=True))
        return
    text = reply.text
    if waited and migration is not None:
        text = views.status_text(migration)
    typer.echo(views.for_terminal(text), err=not reply.ok)


@app.command("worker")
def worker(
    ctx: typer.Context,
    burst: Annotated[bool, typer.Option("--burst", help="exit when the queue is empty")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="worker id (default host:pid)")] = None,  # noqa: UP045
) -> None:
    """Run one worker process."""
    from pgmove.worker.main import run_worker

    run_worker(ctx.obj.config(), burst=burst, worker_id=name)


@app.command("bot")
def bot(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="HTTP mode: where Slack's requests arrive (/slack/events)")] = 3000,
    host: Annotated[str, typer.Option("--host")] = "0.0.0.0",
) -> None:
    """The Slack bot: Socket Mode when SLACK_APP_TOKEN is set, signed HTTP on --port otherwise."""
    import signal
    import threading

    from pgmove.bot.app import start_edge
    from pgmove.bot.settings import SlackSettings
    from pgmove.cli.botproc import start_responder

    config = ctx.obj.config()
    try:
        settings = SlackSettings.from_env()
    except PgmoveError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    logs.configure(ctx.obj.log_level, config.secrets() + settings.secrets())
    config_path = str(ctx.obj.config_path) if ctx.obj.config_path else None
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    responder = start_responder(config_path, ctx.obj.log_level)
    edge = start_edge(Store.from_config(config), settings, port, host)
    while not done.wait(1.0):
        if not responder.is_alive():  # the edge without a responder would ack and never answer
            logging.getLogger("pgmove.bot").error("the responder process died (exit %s); restarting it", responder.exitcode)
            responder = start_responder(config_path, ctx.obj.log_level)
    edge.shutdown()
    responder.terminate()
    responder.join(10)


@app.command("demo")
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="leave the throwaway servers running")] = False,
) -> None:
    """The whole flow on throwaway local servers, with a simulated channel."""
    from pgmove.sandbox.demo import run_demo

    sys.exit(run_demo(keep=keep))
