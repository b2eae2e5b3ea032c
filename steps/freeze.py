"""Freeze a whole server (every database, every session but pgmove's own) and unfreeze it exactly.

Order matters: record everything first (the caller persists the snapshot; apply writes a copy on
the server before it changes anything), then read-only defaults, logins and the role attributes no
guard sees (CREATEDB, CREATEROLE), then subscriptions off, then the DDL guard, then end old sessions
and prepared transactions (after the grace period), then the write guards. Every part is safe to
run twice, so a retried freeze completes whatever a dead worker started. A part that fails (a lock
that cannot be had, say) undoes the whole freeze at once and says why: never a half-frozen source.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import PgmoveError, StepFailed
from pgmove.state.models import FreezeMode, FreezeSnapshot, SettingRow
from pgmove.steps import freezerecord, freezeroles, guards, prepared, sessions, subscriptions
from pgmove.steps.connect import APPLICATION_NAME, Endpoint, Progress, connection, describe, each_in_parallel
from pgmove.steps.sessions import end_sessions
from pgmove.steps.settings import read_settings, set_statement

READ_ONLY = "default_transaction_read_only"


def all_databases(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")
    return [r[0] for r in rows.fetchall()]


def capture(src: Endpoint, mode: FreezeMode, label: str, freeze_id: str = "") -> FreezeSnapshot:
    """Record what the freeze will change, before changing anything.

    A server that already carries a freeze's guards is refused (freezerecord.AlreadyFrozen): its
    settings are the frozen ones, not the originals. Only this very freeze's own record (a retry
    after the store lost the snapshot) is taken back as it was.
    """
    with connection(src) as conn:
        databases = all_databases(conn)
        existing = {(s.database, s.role): s.value for s in read_settings(conn) if s.name == READ_ONLY}
        pgmove_role = str(conn.execute("SELECT session_user").fetchone()[0])  # type: ignore[index]
        logins = [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname <> session_user ORDER BY 1"
        ).fetchall()]
        grants = freezeroles.capture_grants(conn)
        subs = subscriptions.capture(conn)
        database_oids = freezeroles.oids(conn, "database", set(databases))
        logins = logins if mode == FreezeMode.NO_CONNECT else []
        role_names = {role for (_, role) in existing if role} | set(logins) | {g.name for g in grants}
        role_oids = freezeroles.oids(conn, "role", role_names)
    rows = [SettingRow(database=None, role=None, name=READ_ONLY, value=existing.get((None, None)))]
    rows += [SettingRow(database=db, role=None, name=READ_ONLY, value=existing.get((db, None))) for db in databases]
    # A role-level "off" outranks the database default: the freeze must override those too.
    rows += [
        SettingRow(database=db, role=role, name=READ_ONLY, value=value)
        for (db, role), value in sorted(existing.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
        if role is not None
    ]
    acls, traces = [], []
    for db in databases:
        with connection(src, db) as conn:
            found = freezerecord.read(conn, db)
            if found is None:
                acls += guards.capture_acls(conn, db)
            elif found.record is not None and found.record.cut_over is not None:
                raise freezerecord.refusal(found, src.name)  # wherever it is found: a cut-over server is never taken over
            else:
                traces.append(found)
    if traces:
        found = traces[0]
        if found.record is not None and freeze_id and found.record.freeze_id == freeze_id:
            return found.record
        raise freezerecord.refusal(found, src.name)
    return FreezeSnapshot(taken_at=datetime.now(UTC), databases=databases, settings=rows, mode=mode,
                          pgmove_role=pgmove_role, logins=logins, acls=acls, label=label, freeze_id=freeze_id,
                          role_oids=role_oids, database_oids=database_oids, role_grants=grants, subscriptions=subs)


def apply(src: Endpoint, snapshot: FreezeSnapshot, grace_seconds: float, progress: Progress,
          lock_timeout_s: float = 30.0, give_up_seconds: float = guards.GIVE_UP_SECONDS) -> dict[str, Any]:
    with connection(src) as conn:
        found = freezerecord.read(conn, str(conn.info.dbname))
    if found is not None and not freezerecord.is_own(found, snapshot):
        raise freezerecord.refusal(found, src.name)  # someone else's freeze: undoing it is not ours to do
    try:
        return _apply(src, snapshot, grace_seconds, progress, lock_timeout_s)
    except (psycopg.Error, StepFailed) as exc:
        why = exc.message if isinstance(exc, PgmoveError) else describe(exc)
        try:
            unfreeze(src, snapshot, progress, give_up_seconds=give_up_seconds)
        except (psycopg.Error, PgmoveError) as undo:
            undo_why = undo.message if isinstance(undo, PgmoveError) else describe(undo)
            raise StepFailed(f"could not freeze {src.name}: {why}. Undoing the freeze failed too ({undo_why}): "
                             f"{src.name} is partly frozen. Retry the freeze, or unfreeze.") from None
        raise StepFailed(f"could not freeze {src.name}: {why}. Everything the freeze had done is undone: "
                         f"{src.name} takes writes as before. Deal with that, then retry the freeze (or unfreeze "
                         "to end the migration).") from None


def _apply(src: Endpoint, snapshot: FreezeSnapshot, grace_seconds: float, progress: Progress,
           lock_timeout_s: float) -> dict[str, Any]:
    with connection(src) as conn:
        freezerecord.write(conn, snapshot)  # first: from here on the server itself says it is frozen, and how it was
        for row in snapshot.settings:
            conn.execute(set_statement(row, "on"))
        for role in snapshot.logins:
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
        freezeroles.take_grants(conn, snapshot.role_grants)
        frozen_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    what = "cannot log in" if snapshot.logins else "start read-only"
    progress(f"new sessions on {len(snapshot.databases)} databases of {src.name} now {what}", databases=snapshot.databases,
             no_login=snapshot.logins)
    if snapshot.role_grants:
        progress(f"CREATEDB/CREATEROLE taken from {', '.join(g.name for g in snapshot.role_grants)} until the unfreeze",
                 role_grants=[g.model_dump() for g in snapshot.role_grants])
    disabled = subscriptions.disable(src, snapshot.subscriptions)
    if disabled:
        progress(f"subscription(s) {', '.join(disabled)} disabled: they apply nothing until the unfreeze",
                 subscriptions=disabled)
    def guard_ddl(db: str) -> None:
        with connection(src, db) as conn:
            guards.install_ddl_guard(conn, snapshot.pgmove_role, snapshot.label)
            freezerecord.write(conn, snapshot)

    # Database by database is independent: all at once, each part still after the one before on every database.
    each_in_parallel(guard_ddl, snapshot.databases)
    with connection(src) as conn:
        ended, rolled_back = end_sessions(src, conn, frozen_at, grace_seconds, progress)

    def guard_writes(db: str) -> tuple[int, list[dict[str, Any]]]:
        with connection(src, db) as conn:
            # Any still prepared now was prepared after the grace period began: it goes too, or it holds locks.
            late = prepared.roll_back_all(conn, db, "prepared during the freeze")
            guarded = guards.install_write_guards(conn, [a for a in snapshot.acls if a.database == db], lock_timeout_s)
            return guarded, late + prepared.roll_back_all(conn, db, "prepared during the freeze")

    done = each_in_parallel(guard_writes, snapshot.databases)
    guarded = sum(count for count, _ in done)
    for late in (late for _, late in done):
        for xact in late:
            progress(f"rolled back prepared transaction {prepared.describe(xact)}: {xact['reason']}",
                     prepared_transaction=xact)
        rolled_back += late
    progress(f"write guards on {guarded} tables, {len(snapshot.acls)} sequence/large-object privileges revoked")
    progress("a superuser can still override the freeze on purpose (SET session_replication_role, ALTER EVENT TRIGGER)")
    with connection(src) as conn:
        # The record once more, durably: every commit the freeze let through lies before it in the WAL, so the
        # flushed position after it covers them all (a logical drain waits for exactly that, nothing later).
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = on")
            freezerecord.write(conn, snapshot)
        durable = str(conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0])  # type: ignore[index]
    return {"databases": snapshot.databases, "frozen_at": frozen_at.isoformat(), "durable_lsn": durable,
            "sessions_ended": ended,
            "prepared_rolled_back": rolled_back, "mode": snapshot.mode.value, "guarded_tables": guarded,
            "no_login": snapshot.logins, "role_grants_taken": [g.name for g in snapshot.role_grants],
            "subscriptions_disabled": disabled}


# A session the freeze made read-only has nothing to lose but a read: a short wait, so the unfreeze step (and a
# cutover window's give-back) is not held for a long freeze grace period.
UNFREEZE_GRACE_SECONDS = 5.0


def unfreeze(src: Endpoint, snapshot: FreezeSnapshot, progress: Progress,
             grace_seconds: float = UNFREEZE_GRACE_SECONDS, give_up_seconds: float = guards.GIVE_UP_SECONDS,
             ) -> dict[str, Any]:
    """Put every recorded setting, login, role attribute, subscription and privilege back exactly, then the guards go.

    Roles and databases are found by oid: renamed ones are restored under their new names, dropped ones
    are reported, and nothing missing stops the rest, so every retry can finish. The server's copy of
    the record goes last (with the maintenance database's guard schema), so a retry can still find it.
    """
    with connection(src) as conn:
        maintenance = str(conn.info.dbname)
        names = freezeroles.Names(conn, snapshot)
        restored = 0
        for row in snapshot.settings:
            database = names.database(row.database) if row.database is not None else None
            role = names.role(row.role) if row.role is not None else None
            if (row.database is not None and database is None) or (row.role is not None and role is None):
                continue
            conn.execute(set_statement(row.model_copy(update={"database": database, "role": role}), row.value))
            restored += 1
        # Read at once: a session born after this starts writable, and ending it would only cost its client a retry.
        writable_since = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        freezeroles.give_back(conn, snapshot, names)
    enabled, gone = subscriptions.enable(src, snapshot.subscriptions, names.databases)
    names.changes += gone
    # dropped meanwhile: nothing of ours is left in it; the maintenance database's guards (and record) go last
    current = sorted(((db, names.database(db)) for db in snapshot.databases if names.database(db) is not None),
                     key=lambda pair: pair[1] == maintenance)
    def give_writes_back(pair: tuple[str, str | None]) -> None:
        recorded, db = pair
        with connection(src, db) as conn:
            guards.restore_acls(conn, [a for a in snapshot.acls if a.database == recorded], names.roles)
            guards.let_writes_through(conn)

    each_in_parallel(give_writes_back, current)
    progress(f"writes are back on {src.name}: read-only defaults, logins and privileges restored, guards let every "
             "statement through")
    # Writes are back. Before the guards go: a session the freeze made read-only may hold a lock in an open
    # transaction (a reader), and dropping a guard waits for every lock on its table.
    ended = _end_sessions_opened_frozen(src, snapshot, writable_since, grace_seconds, progress)
    removed = 0
    for _, db in current:
        with connection(src, db) as conn:
            removed += guards.remove_guards(conn, give_up_s=give_up_seconds)
    changed = f"; changed during the freeze: {'; '.join(names.changes)}" if names.changes else ""
    if ended:
        changed += (f"; {len(ended)} session(s) opened during the freeze ended, as they would have stayed "
                    "read-only (a pool reconnects them writable)")
    progress(f"{src.name}: guards removed from {removed} tables; {restored} settings, {len(snapshot.logins)} logins, "
             f"{len(snapshot.role_grants)} CREATEDB/CREATEROLE grants, {len(enabled)} subscriptions and "
             f"{len(snapshot.acls)} privileges restored as recorded at {snapshot.taken_at:%H:%M:%S} UTC{changed}",
             changed=names.changes)
    return {"restored_settings": restored, "restored_logins": snapshot.logins, "databases": snapshot.databases,
            "restored_role_grants": [g.name for g in snapshot.role_grants], "subscriptions_enabled": enabled,
            "changed": names.changes, "sessions_ended": ended}


def _end_sessions_opened_frozen(src: Endpoint, snapshot: FreezeSnapshot, writable_since: datetime,
                                grace_seconds: float, progress: Progress) -> list[dict[str, Any]]:
    if snapshot.mode != FreezeMode.READ_ONLY:
        return []  # no-connect kept the app out: nothing of it started during the freeze
    with connection(src) as conn:
        return sessions.end_sessions_born_read_only(src, conn, snapshot.taken_at, writable_since, snapshot.databases,
                                                    APPLICATION_NAME,
                                                    grace_seconds, progress)
