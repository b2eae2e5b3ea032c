"""`pgmove --config FILE do|worker|demo ...`: the contract in DESIGN.md."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from pgmove.cli import logs
from pgmove.cli.do import cli_actor, emit, record_origin, wait_until_resting
from pgmove.handlers import views
from pgmove.handlers.commands import Deps, handle
from pgmove.handlers.helptext import help_reply
from pgmove.handlers.parse import USAGE
from pgmove.handlers.reply import Reply
from pgmove.state.config import Config, load_config, redact_url
from pgmove.state.errors import PgmoveError, Unavailable, UsageError
from pgmove.state.machine import State
from pgmove.state.store import Store
from pgmove.worker.queue import enqueuer, make_queue


class _Commands(TyperGroup):
    """`pgmove plan a b` (a chat verb where a command goes) says how to run it instead of "No such command"."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:  # typer vendors its own click
        name = args[0] if args else ""
        if name and self.get_command(ctx, name) is None and name.lower() in USAGE:
            typer.echo(f"{name} is a /pgmove command; on the command line run it as: pgmove do \"{' '.join(args)}\"",
                       err=True)  # plain, one line: a framed error box would break the command across lines
            ctx.exit(EXIT_REFUSED)
        return super().resolve_command(ctx, args)


# No locals in tracebacks: they would print the configuration, the Redis password in redis_url included.
app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Move a PostgreSQL server, two people, one runbook.")

EXIT_REFUSED, EXIT_FAILED, EXIT_TIMEOUT, EXIT_UNAVAILABLE = 2, 1, 3, 4


def run() -> None:
    """The `pgmove` script: pgmove's own infrastructure gone (Redis down mid-way included) is one line and
    exit 4, never a traceback, and never taken for a failed migration."""
    try:
        app()
    except Unavailable as exc:
        if "--json" in sys.argv[1:]:
            typer.echo(json.dumps({"ok": False, "kind": "unavailable", "text": exc.message, "verb": None}, indent=2))
        typer.echo(exc.message, err=True)
        sys.exit(EXIT_UNAVAILABLE)


def pgmove_version() -> str:
    try:
        return version("pgmove")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "unknown (not installed)"


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"pgmove {pgmove_version()}")
        raise typer.Exit()


class Context:
    def __init__(self, config_path: Path | None, log_level: str) -> None:
        self.config_path, self.log_level = config_path, log_level

    def config(self) -> Config:
        try:
            config = load_config(self.config_path)
        except PgmoveError as exc:  # missing, unreadable or invalid: pgmove itself cannot run
            typer.echo(exc.message, err=True)
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        logs.configure(self.log_level, config.secrets())
        return config


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", envvar="PGMOVE_CONFIG", help="the TOML configuration file")] = None,  # noqa: UP045
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "WARNING",
    _version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                           help="print pgmove's version and exit")] = False,
) -> None:
    ctx.obj = Context(config, log_level.upper())


@app.command("do")
def do(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help='the /pgmove command text, e.g. "plan prod-old prod-new"')],
    as_user: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--as", help="the chat id to act as: one [access.cli_users] maps your OS user to (derived when only one)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="return when the migration rests; its events go to stderr")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the reply as JSON: ok, kind, text, verb, then the migration's fields")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, max=7 * 24 * 3600,
                                           help="seconds --wait waits at most (1 to a week)")] = 3600.0,
) -> None:
    """Run any /pgmove command through the same handlers the bot uses.

    Exit status: 0 done, 1 the migration failed, 2 refused, 3 --wait timed out, 4 pgmove's own infrastructure
    (Redis, the configuration) unavailable."""
    config = ctx.obj.config()
    try:
        actor = cli_actor(config, as_user, str(ctx.obj.config_path or os.environ.get("PGMOVE_CONFIG")))
    except PgmoveError as exc:
        emit(Reply.refusal("usage" if isinstance(exc, UsageError) else "refused", exc.message), as_json)
        raise typer.Exit(EXIT_REFUSED) from None
    store = Store.from_config(config)
    deps = Deps(config=config, store=store, enqueue=enqueuer(make_queue(store, config.queue_name)))
    reply = handle(deps, actor, text)
    record_origin(store, reply, actor)
    if not reply.ok:
        emit(reply, as_json)
        raise typer.Exit(EXIT_UNAVAILABLE if reply.kind == "unavailable" else EXIT_REFUSED)
    migration = reply.migration
    if wait and migration is not None:
        rested = wait_until_resting(store, config, migration, timeout, changed=reply.kind == "accepted",
                                    enqueue=deps.enqueue)
        if rested is None:
            said = f"timed out after {timeout:g}s; the migration goes on: `/pgmove status {migration.source}`"
            emit(reply, as_json, store.get(migration.id), said, kind="timeout", ok=False)
            raise typer.Exit(EXIT_TIMEOUT)
        emit(reply, as_json, rested, views.status_text(rested))
        if rested.state in (State.FAILED, State.VERIFY_FAILED):
            raise typer.Exit(EXIT_FAILED)
        return
    emit(reply, as_json)


@app.command("help")
def help_verb(
    verb: Annotated[Optional[str], typer.Argument(help="a /pgmove verb: plan, freeze, approve, ...")] = None,  # noqa: UP045
) -> None:
    """What a /pgmove verb does, its options and an example (the same text as /pgmove help VERB in Slack)."""
    try:
        reply = help_reply(verb.lower() if verb else None)
    except UsageError as exc:
        typer.echo(views.for_terminal(exc.message), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(views.for_terminal(reply.text).replace('pgmove do "help <command>"', "pgmove help <command>"))
    if not verb:
        typer.echo("On the command line: pgmove do [--as ID] [--wait] [--json] \"<command>\"; pgmove --help for the rest.")


@app.command("worker")
def worker(
    ctx: typer.Context,
    burst: Annotated[bool, typer.Option("--burst", help="exit when the queue is empty")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="worker id (default host:pid)")] = None,  # noqa: UP045
) -> None:
    """Run one worker process."""
    from pgmove.worker.main import run_worker
    from pgmove.worker.runtime import default_worker_id

    config = ctx.obj.config()
    Store.from_config(config).ping()  # Redis down is one line and exit 4 before anything starts
    worker_id = name or default_worker_id()
    typer.echo(f"pgmove {pgmove_version()} worker {worker_id}: Redis {redact_url(config.redis_url)}, queue "
               f"{config.queue_name}, servers {', '.join(sorted(config.servers)) or 'none configured'}", err=True)
    run_worker(config, burst=burst, worker_id=worker_id)


@app.command("health")
def health(
    ctx: typer.Context,
    worker_here: Annotated[bool, typer.Option("--worker-here", help="also: a worker on this host beat lately")] = False,
) -> None:
    """For health checks: exit 0 when Redis answers (and, with --worker-here, this host's worker beats),
    4 when Redis or the configuration is unavailable, 1 when the worker is silent."""
    import socket

    config = ctx.obj.config()
    store = Store.from_config(config)
    store.ping()
    if worker_here:
        mine = [w for w in store.workers_seen(config.worker_gone_after) if w.startswith(f"{socket.gethostname()}:")]
        if not mine:
            typer.echo(f"no worker on {socket.gethostname()} beat in the last {config.worker_gone_after:g}s", err=True)
            raise typer.Exit(EXIT_FAILED)
    typer.echo("ok")


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
    except PgmoveError as exc:  # the Slack settings are configuration too
        typer.echo(exc.message, err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    logs.configure(ctx.obj.log_level, config.secrets() + settings.secrets())
    config_path = str(ctx.obj.config_path) if ctx.obj.config_path else None
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    store = Store.from_config(config)
    store.ping()  # Redis down is one line and exit 4, not an edge that acks into nowhere
    responder = start_responder(config_path, ctx.obj.log_level)
    edge = start_edge(store, settings, port, host)
    backoff, last_start = 1.0, time.monotonic()
    restart_at: float | None = None
    while not done.wait(1.0):
        if responder.is_alive():
            continue
        # The edge without a responder would ack and never answer; but one that dies at once (Redis gone,
        # a bad token) is restarted less and less often, up to once a minute, not every second.
        if restart_at is None:
            logging.getLogger("pgmove.bot").error("the responder process died (exit %s); restarting it in %.0fs",
                                                  responder.exitcode, backoff)
            restart_at = time.monotonic() + backoff
        elif time.monotonic() >= restart_at:
            started = time.monotonic()
            responder = start_responder(config_path, ctx.obj.log_level)
            restart_at = None
            backoff = 1.0 if started - last_start > 300 else min(60.0, backoff * 2)
            last_start = started
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
