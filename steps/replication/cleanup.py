"""Remove every replication object of one migration from both servers, whatever state a dead worker left.

Found by name (the `pgmove_<id>_` prefix, and the recorded names), so it works with no record at all, and
run as pgmove's own session, so it works on a frozen source (the freeze's DDL guard lets that session
through; dropping a slot is a function call no guard sees). The target's subscriptions are detached from
their slots before they are dropped, so dropping them never depends on reaching the source; the slots,
the table-sync slots and the publications are then dropped on the source by pgmove itself.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import ConnectionFailed
from pgmove.state.replication import SyncSetup, name_prefix
from pgmove.steps import guards
from pgmove.steps.connect import Endpoint, Progress, connection, describe, end_backends
from pgmove.steps.replication import published

SLOT_RELEASE_SECONDS = 15.0

_DATABASES = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


def _like(prefix: str) -> str:
    return prefix.replace("_", r"\_")


def run(src: Endpoint, dst: Endpoint, migration_id: str, setup: SyncSetup | None, progress: Progress) -> dict[str, Any]:
    """Idempotent. Returns what was dropped and, under "left", what could not be (each line says how to)."""
    prefix = name_prefix(migration_id)
    recorded = setup.databases if setup else []
    names = sorted({n for d in recorded for n in (d.publication, d.slot, d.subscription)})
    done: dict[str, Any] = {"subscriptions": [], "origins": [], "slots": [], "publications": [], "identity_restored": [],
                            "left": []}
    dropped_oids: list[int] = []
    target_system: str | None = None
    live_oids: list[int] = []
    try:
        target_system, dropped_oids, live_oids = _clean_target(dst, prefix, names, done)
    except (ConnectionFailed, psycopg.Error) as exc:
        why = exc.message if isinstance(exc, ConnectionFailed) else describe(exc)
        done["left"].append(f"{dst.name}: subscriptions named {prefix}* may remain ({why}); on {dst.name}, in each "
                            "database that has one: ALTER SUBSCRIPTION <name> DISABLE; ALTER SUBSCRIPTION <name> SET "
                            "(slot_name = NONE); DROP SUBSCRIPTION <name>")
    try:
        _clean_source(src, prefix, names, setup, dropped_oids, live_oids, target_system, done)
    except (ConnectionFailed, psycopg.Error) as exc:
        why = exc.message if isinstance(exc, ConnectionFailed) else describe(exc)
        slots = [d.slot for d in recorded] or [f"{prefix}*"]
        identity = (f"; put back the replica identity of {', '.join(t.label for t in setup.identity_full)} "
                    "(ALTER TABLE ... REPLICA IDENTITY DEFAULT)" if setup and setup.identity_full else "")
        done["left"].append(
            f"{src.name}: replication slot(s) {', '.join(slots)} and the table-sync slots pg_<oid>_sync_* of their "
            f"subscriptions may remain and hold WAL ({why}); on {src.name} drop each with pg_drop_replication_slot, "
            f"and each publication named {prefix}* with DROP PUBLICATION{identity}")
    counts = ", ".join(f"{len(done[k])} {k}" for k in ("subscriptions", "slots", "publications", "origins"))
    progress(f"replication objects of {migration_id} removed: {counts}"
             + (f"; left: {' | '.join(done['left'])}" if done["left"] else ""), cleanup=done)
    return done


def _clean_target(dst: Endpoint, prefix: str, names: list[str], done: dict[str, Any]) -> tuple[str, list[int], list[int]]:
    with connection(dst) as conn:
        system = str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])  # type: ignore[index]
        subs = conn.execute(
            "SELECT s.oid::bigint, s.subname, d.datname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
            "WHERE s.subname LIKE %s || '%%' OR s.subname = ANY(%s)", (_like(prefix), names)).fetchall()
    oids = []
    for oid, name, database in subs:
        with connection(dst, database) as conn:
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            conn.execute(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(ident))
        oids.append(int(oid))
        done["subscriptions"].append(name)
    with connection(dst) as conn:
        live = [int(r[0]) for r in conn.execute("SELECT oid::bigint FROM pg_subscription").fetchall()]
        # pg_<suboid> (apply) and pg_<suboid>_<relid> (table sync): DROP SUBSCRIPTION removes them, but not
        # if it never ran to the end; an origin whose subscription is gone belongs to nobody.
        for (origin,) in conn.execute(
                "SELECT roname FROM pg_replication_origin WHERE roname ~ '^pg_[0-9]+(_[0-9]+)?$' "
                "AND NOT split_part(roname, '_', 2)::bigint = ANY(%s)", (live,)).fetchall():
            conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
            done["origins"].append(origin)
    return system, oids, live


def _clean_source(src: Endpoint, prefix: str, names: list[str], setup: SyncSetup | None, dropped_oids: list[int],
                  live_oids: list[int], target_system: str | None, done: dict[str, Any]) -> None:
    with connection(src) as conn:
        for slot in _slots(conn, prefix, names, dropped_oids, live_oids, target_system):
            drop_slot(conn, slot)
            done["slots"].append(slot)
        databases = [r[0] for r in conn.execute(_DATABASES).fetchall()]
    for database in databases:
        with connection(src, database) as conn:
            for (name,) in conn.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s || '%%' "
                                        "OR pubname = ANY(%s)", (_like(prefix), names)).fetchall():
                conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
                done["publications"].append(f"{database}.{name}")
            for table in [t for t in (setup.identity_full if setup else []) if t.database == database]:
                published.set_identity(conn, table, table.identity)
                done["identity_restored"].append(table.label)


def _slots(conn: psycopg.Connection[Any], prefix: str, names: list[str], dropped_oids: list[int],
           live_oids: list[int], target_system: str | None) -> list[str]:
    """Ours by name, and the table-sync slots (pg_<suboid>_sync_<relid>_<subscriber system id>) of our
    subscriptions, or of any subscription the target no longer has."""
    rows = conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
    found = []
    for (slot,) in rows:
        parts = slot.split("_")
        is_sync = len(parts) == 5 and parts[0] == "pg" and parts[2] == "sync" and parts[1].isdigit()
        if slot.startswith(prefix) or slot in names:
            found.append(slot)
        elif is_sync and int(parts[1]) in dropped_oids:
            found.append(slot)
        elif is_sync and target_system is not None and parts[4] == target_system and int(parts[1]) not in live_oids:
            found.append(slot)
    return found


def drop_slot(conn: psycopg.Connection[Any], slot: str) -> None:
    """A slot still held by its WAL sender (whose subscriber just went) is released by ending that sender."""
    deadline = time.monotonic() + SLOT_RELEASE_SECONDS
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if row is None:
            return
        if row[0] is not None:
            end_backends(conn, [row[0]])
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
        except psycopg.errors.UndefinedObject:
            return


def leftovers(src: Endpoint, dst: Endpoint) -> dict[str, int]:
    """Replication slots, publications, subscriptions and origins on each side (every one, not only pgmove's), and
    the write guards the target carried while it followed the source."""
    counts: dict[str, int] = {}
    for side, endpoint in (("source", src), ("target", dst)):
        with connection(endpoint) as conn:
            for what, query in (("slots", "SELECT count(*) FROM pg_replication_slots"),
                                ("subscriptions", "SELECT count(*) FROM pg_subscription"),
                                ("origins", "SELECT count(*) FROM pg_replication_origin")):
                counts[f"{side}.{what}"] = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
            databases = [r[0] for r in conn.execute(_DATABASES).fetchall()]
        counts[f"{side}.publications"] = 0
        for database in databases:
            with connection(endpoint, database) as conn:
                counts[f"{side}.publications"] += int(
                    conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0])  # type: ignore[index]
                if side == "target":  # the source may stay frozen, guards and all; the target keeps none of them
                    counts["target.guards"] = counts.get("target.guards", 0) + int(conn.execute(
                        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname = %s) "
                        "+ (SELECT count(*) FROM pg_event_trigger WHERE evtname IN (%s, %s))",
                        (guards.TABLE_TRIGGER, guards.EVENT_TRIGGER, guards.NEW_TABLE_TRIGGER)).fetchone()[0])  # type: ignore[index]
    return counts
