"""Preflight for the poolers in front of the app: reachable, which PgBouncer, pool mode, that its databases point
at the source, and that its clients would wait out the pause rather than get errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgmove.state.errors import PgmoveError
from pgmove.steps import poolerfile
from pgmove.steps.connect import Endpoint
from pgmove.steps.pooler import (
    Pooler,
    already_paused,
    backends,
    console,
    databases,
    paused_by_others,
    settings,
    version,
)

LOCAL = {"", "localhost", "127.0.0.1", "::1"}


@dataclass
class Findings:
    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check(poolers: list[Pooler], src: Endpoint, moved: list[str], window_seconds: float,
          target_host: str | None = None) -> Findings:
    """`moved`: the source databases the plan moves; `window_seconds`: the longest the app may be kept paused;
    `target_host`: what a rewritten include file would say (None: not known yet)."""
    found = Findings()
    for p in poolers:
        if p.password_env and p.password is None:
            found.problems.append(f"pooler {p.name}'s password_env names {p.password_env}, which is not set in the "
                                  "worker's environment")
            continue
        if p.databases_file is not None:
            found.problems += [f"pooler {p.name}'s databases_file {why}"
                               for why in poolerfile.problems(p.databases_file, list(p.databases), target_host)]
        try:
            _check_one(p, src, moved, window_seconds, found)
        except PgmoveError as exc:
            found.problems.append(exc.message)
    return found


def _check_one(p: Pooler, src: Endpoint, moved: list[str], window: float, found: Findings) -> None:
    with console(p) as conn:
        release = version(conn)
        conf = settings(conn)
        serves = backends(conn, p.databases)
        rows = databases(conn)
        held = paused_by_others(conn, p.databases)
    if held:
        found.problems.append(already_paused(p.name, held))
    # A database's own pool_mode (SHOW DATABASES) overrides the pooler's.
    modes = {str(rows[db].get("pool_mode") or conf.get("pool_mode", "session")) for db in serves}
    mode = "/".join(sorted(modes)) or conf.get("pool_mode", "session")
    found.facts.append(f"pooler {p.name}: {release}, {mode} pooling, "
                       + ", ".join(f"{db} -> {b.describe()}" for db, b in serves.items()))
    if "session" in modes:
        found.warnings.append(
            f"pooler {p.name} uses session pooling: PAUSE waits until every client holding a server connection "
            f"disconnects, not just until transactions end, so with a connected app it will not pause within "
            f"{p.pause_timeout:g}s and the cutover gives up (the app stays on the source). Transaction pooling "
            "pauses between transactions.")
    for db in p.databases:
        if db not in serves:
            found.problems.append(f"pooler {p.name} serves no database named {db} (SHOW DATABASES).")
            continue
        b = serves[db]
        if not _same_server(b.host, b.port, src):
            found.problems.append(f"pooler {p.name}'s {db} points at {b.host}:{b.port}, not at {src.name} "
                                  f"({_where(src)}): pgmove would repoint a pooler that does not serve this server.")
        elif b.dbname not in moved:
            found.problems.append(f"pooler {p.name}'s {db} points at database {b.dbname}, which this plan does not move.")
    wait = float(conf.get("query_wait_timeout", "120") or 0)
    if wait and wait <= window:
        found.warnings.append(
            f"pooler {p.name}'s query_wait_timeout is {wait:g}s, not longer than the pause window (up to "
            f"{window:g}s): a client queued longer than that gets an error instead of waiting. Raise it above "
            f"{window:g}s (or 0, no limit) for the cutover.")


def _same_server(host: str, port: int, src: Endpoint) -> bool:
    params = src.params
    src_host, src_port = str(params.get("host") or ""), int(params.get("port") or 5432)
    if port != src_port:
        return False
    return host == src_host or (host in LOCAL and src_host in LOCAL)


def _where(src: Endpoint) -> str:
    params = src.params
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
