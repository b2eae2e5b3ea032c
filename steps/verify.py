"""Verification: inventory, exact row counts, content checksums by key range, sequences, freshness, and
a write as the app role on the target (rolled back). Both servers are read in parallel, largest first.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.state.models import FreezeSnapshot, QuietMark
from pgmove.state.report import DatabaseReport, LargeObjectCounts, TableReport, VerificationReport, VerifyMode
from pgmove.steps import checksum, inventory, largeobjects, quiet
from pgmove.steps.connect import Endpoint, Progress, ThreadConnections, connection, each_in_parallel
from pgmove.steps.prehash import SourceHashes, verification_session
from pgmove.steps.settings import before_freeze, read_settings
from pgmove.steps.smoke import smoke_test
from pgmove.steps.targethash import TargetHashes, target_side

# An extension's own tables and sequences are its business, except its configuration tables, whose rows pg_dump
# carries as user data (pg_extension_config_dump).
_EXTENSION_ONLY = """
    EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e' AND e.classid = 'pg_class'::regclass AND e.objid = c.oid)
    AND NOT EXISTS (SELECT 1 FROM pg_extension x WHERE c.oid = ANY(x.extconfig))
"""
TABLES = sql.SQL("""
    SELECT n.nspname, c.relname, c.relpages FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
      AND NOT ({extension_only})
    ORDER BY c.relpages DESC, 1, 2
""").format(extension_only=sql.SQL(_EXTENSION_ONLY))
# A materialized view holds what its query gave at its last refresh: on a live source that is usually stale, and
# the target's is refreshed from the copied (and verified) tables, as pg_restore does. So its rows are not compared;
# whether it is populated is.
_MATVIEWS = """
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relispopulated
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm'
"""
_SEQUENCES = sql.SQL("""
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT ({extension_only})
    ORDER BY 1, 2
""").format(extension_only=sql.SQL(_EXTENSION_ONLY))
QUICK_SAMPLE = 8  # quick mode hashes one chunk in eight (counts stay exact)


def run(
    src: Endpoint, dst: Endpoint, databases: list[str], snapshot: FreezeSnapshot | None, progress: Progress,
    jobs: int = 2, quick: bool = False, freshness: list[dict[str, str]] | None = None, mark: QuietMark | None = None,
    source_hashes: SourceHashes | None = None, target_hashes: TargetHashes | None = None,
    trusted_tables: set[tuple[str, str, str]] | None = None,
) -> VerificationReport:
    """Everything compared; `source_hashes`, the source's sums taken during the copy of this very freeze, spare
    reading the source's tables again, and `target_hashes`, the target's taken as each table landed, spare
    reading a target table proven unchanged since (a full verification only: quick mode samples by chunk).
    `trusted_tables` (database, schema, table): the rows of these are not hashed, everything else is compared
    as always (the logical window's check: these were verified while in sync and replication carries them)."""
    started = time.monotonic()
    problems: list[str] = []
    notes: list[str] = []
    if mark is not None:  # the source as a whole: a database or role new or changed since the freeze blocks
        server = quiet.server_changes(src, mark, databases, snapshot.databases if snapshot else databases)
        problems += server.problems
        notes += server.notes
    with connection(src) as s, connection(dst) as d:
        problems += _compare_roles(s, d) + _compare_settings(s, d, snapshot, set(databases))
        present = {r[0] for r in d.execute("SELECT datname FROM pg_database").fetchall()}
        same_major = int(s.info.server_version) // 10000 == int(d.info.server_version) // 10000
    per_db: list[DatabaseReport] = []
    pool = ThreadConnections(verification_session)
    # checksums run many small queries: one session per thread and database
    hashed = (source_hashes, target_hashes) if not quick else (None, None)
    try:
        with ThreadPoolExecutor(max_workers=max(2, 2 * jobs)) as executor:
            # Every database's work is queued first, so the pool never idles at the tail of one database.
            problems += [f"database {name} is missing on {dst.name}" for name in databases if name not in present]

            def start(name: str) -> _Pending:
                trusted = {(s, t) for d, s, t in trusted_tables or () if d == name}
                return _start_database(src, dst, name, executor, pool, same_major, quick, hashed, trusted)

            # Each database's catalog comparison at once: inside a cutover window they are most of the work.
            started_dbs = each_in_parallel(start, [name for name in databases if name in present])
            for pending in started_dbs:
                result = _finish_database(pending, progress)
                name = result.database
                result.problems += _freshness(src, dst, name, [f for f in freshness or [] if f.get("database") == name])
                per_db.append(result)
                problems += result.problems
                notes += pending.notes
                progress(f"{name}: {result.tables} tables, {result.rows:,} rows compared, "
                         f"{len(result.problems)} difference(s)", database=name, rows=result.rows)
    finally:
        pool.close()
    try:
        smoke = smoke_test(dst, databases, progress)
    except StepFailed as exc:
        smoke, problems = [], [*problems, f"write test on the target: {exc.message}"]
    return VerificationReport(
        ok=not problems, mode=VerifyMode.LIVE if trusted_tables is not None else VerifyMode.QUICK if quick else VerifyMode.FULL, problems=problems, notes=notes,
        databases=per_db, tables=sum(r.tables for r in per_db), rows=sum(r.rows for r in per_db),
        smoke=smoke, seconds=round(time.monotonic() - started, 2),
        source_hashed_during_copy=sum(p.source_hashed for p in started_dbs),
        target_hashed_during_copy=sum(sum(p.target_reused) for p in started_dbs),
        target_changed_since_hashed=sum(len(p.target_reused) - sum(p.target_reused) for p in started_dbs),
    )


@dataclass
class _Pending:
    """One database's work in flight: its checksum futures queued, its catalog comparison done."""

    database: str
    plans: list[checksum.TablePlan]
    # (schema, table, side), or ("", "large objects", side) -> per segment. Keyed by the names, never by a label
    # joined with a dot: "a.b".c and a."b.c" are two tables.
    futures: dict[tuple[str, str, str], list[Future[Any]]]
    problems: list[str]  # inventory and sequences; the content differences join them as they are found
    notes: list[str]
    endpoints: tuple[Endpoint, Endpoint]
    pool: ThreadConnections
    executor: ThreadPoolExecutor
    lo_ranges: list[tuple[int, int]]
    source_hashed: int = 0
    target_reused: list[bool] = field(default_factory=list)  # per table hashed on the target during the copy


def _start_database(src: Endpoint, dst: Endpoint, name: str, executor: ThreadPoolExecutor, pool: ThreadConnections,
                    same_major: bool, quick: bool, hashed: tuple[SourceHashes | None, TargetHashes | None],
                    trusted: set[tuple[str, str]] | None = None) -> _Pending:
    sample = QUICK_SAMPLE if quick else 1
    futures: dict[tuple[str, str, str], list[Future[Any]]] = {}
    with connection(src, name) as s, connection(dst, name) as d:
        tables = [(r[0], r[1]) for r in s.execute(TABLES).fetchall()]
        target_tables = {(r[0], r[1]) for r in d.execute(TABLES).fetchall()}
        plans = [checksum.plan_table(s, schema, table) for schema, table in tables
                 if (schema, table) in target_tables and (schema, table) not in (trusted or ())]
        source_hashed, target_reused = 0, list[bool]()
        for plan in plans:  # largest first: the long tables start while the small ones fill the gaps
            sides = [("source", src, s), ("target", dst, d)]
            earlier = hashed[0].get(name, plan.schema, plan.name) if hashed[0] is not None else None
            if earlier is not None:
                futures[(plan.schema, plan.name, "source")] = [_done(earlier.chunks)]
                sides, source_hashed = sides[1:], source_hashed + 1
            landed = hashed[1].get(name, plan.schema, plan.name) if hashed[1] is not None else None
            if landed is not None:  # reused if the target's table is provably as it was hashed, else read again
                futures[(plan.schema, plan.name, "target")] = [executor.submit(target_side, pool, dst, name, plan, landed,
                                                                               target_reused)]
                sides = sides[:-1]
            for side, ep, conn in sides:
                futures[(plan.schema, plan.name, side)] = [executor.submit(_sums, pool, ep, name, plan, piece, sample, quick)
                                               for piece in checksum.segments(conn, plan)]
        lo_ranges = largeobjects.ranges(s)
        for side, ep in (("source", src), ("target", dst)):
            futures[("", "large objects", side)] = [executor.submit(_lo_sums, pool, ep, name, low, high)
                                                for low, high in lo_ranges]
        # The catalog work runs while the executor hashes.
        inv_problems, notes = inventory.compare(name, inventory.inventory(s), inventory.inventory(d), same_major)
        problems = inv_problems + _compare_sequences(s, d, name)
        views, view_problems = _compare_matviews(s, d, name)
        problems += view_problems
        if views:
            notes.append(f"{name}: {views} materialized view(s) refreshed on the target from the verified tables; "
                         "their rows are not compared with the source's, which hold its last refresh")
    return _Pending(name, plans, futures, problems, notes, (src, dst), pool, executor, lo_ranges, source_hashed,
                    target_reused)


def _compare_matviews(s: psycopg.Connection[Any], d: psycopg.Connection[Any], database: str) -> tuple[int, list[str]]:
    source = dict(s.execute(_MATVIEWS).fetchall())
    target = dict(d.execute(_MATVIEWS).fetchall())
    said = {True: "populated", False: "not populated"}
    problems = [f"{database}: materialized view {name} is {said[populated]} on the source, "
                f"{said[target[name]]} on the target" for name, populated in sorted(source.items())
                if name in target and target[name] != populated]
    return sum(1 for populated in source.values() if populated), problems


def _done(chunks: dict[int, tuple[int, int]]) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(dict(chunks))
    return future


def _finish_database(pending: _Pending, progress: Progress) -> DatabaseReport:
    name, plans, futures, problems = pending.database, pending.plans, pending.futures, pending.problems
    counts: list[TableReport] = []
    last_report = time.monotonic()
    for plan in plans:
        parts: dict[str, list[dict[int, tuple[int, int]]]] = {"source": [], "target": []}
        for side in ("source", "target"):
            segments = futures[(plan.schema, plan.name, side)]
            for n, future in enumerate(segments, 1):
                parts[side].append(future.result())
                if time.monotonic() - last_report >= 5:  # a long table shows movement, segment by segment
                    progress(f"{name}: {plan.label} {side} segment {n}/{len(segments)}, "
                             f"{len(counts)}/{len(plans)} tables done", database=name, table=plan.label)
                    last_report = time.monotonic()
        left, right = checksum.merged(parts["source"]), checksum.merged(parts["target"])
        if checksum.totals(left) != checksum.totals(right) and 0 in left.chunks and len(left.chunks) == 1:
            plan = plan.sized(left.rows)
            left, right = _pin(pending, plan)  # totals differ: a second pass by chunk says where
        content = [f"{name}: {p}" for p in checksum.differences(plan, left, right)]
        problems += content
        # ok means everything about the table: rows, content, and its columns, constraints and triggers.
        about = [p for p in pending.problems if _names_table(p, name, plan.label)]
        counts.append(TableReport(table=plan.label, source_rows=left.rows, target_rows=right.rows,
                                  ok=left.rows == right.rows and not content and not about,
                                  differences=len(content) + len(about)))
        if time.monotonic() - last_report >= 5:
            progress(f"{name}: {len(counts)}/{len(plans)} tables compared", database=name, done=len(counts), total=len(plans))
            last_report = time.monotonic()
    lo_problems, lo_counts = _compare_large_objects(pending)
    problems += [f"{name}: {p}" for p in lo_problems]
    return DatabaseReport(database=name, tables=len(plans), rows=sum(c.source_rows for c in counts),
                          problems=problems, table_counts=counts, large_objects=lo_counts)


def _lo_sums(pool: ThreadConnections, ep: Endpoint, db: str, low: int, high: int) -> tuple[int, int, int]:
    return largeobjects.range_sums(pool.get(ep, db), low, high)


def _compare_large_objects(pending: _Pending) -> tuple[list[str], LargeObjectCounts]:
    """Range sums from both sides; a range that differs is read object by object to name what differs."""
    name, futures, (src, dst) = pending.database, pending.futures, pending.endpoints
    sums = {side: [f.result() for f in futures[("", "large objects", side)]] for side in ("source", "target")}
    problems = []
    for (low, high), left, right in zip(pending.lo_ranges, sums["source"], sums["target"], strict=True):
        if left != right:
            problems += largeobjects.differences(largeobjects.objects(pending.pool.get(src, name), low, high),
                                                 largeobjects.objects(pending.pool.get(dst, name), low, high))
    counts = LargeObjectCounts(**{f"{side}_{what}": sum(part[n] for part in sums[side])
                                  for side in ("source", "target") for n, what in ((0, "objects"), (1, "bytes"))})
    return problems, counts


def _names_table(problem: str, database: str, label: str) -> bool:
    """An inventory problem about this table itself, or one of its columns, constraints or triggers."""
    return any(problem.startswith(f"{database}: {kind} {label}{end}")
               for kind in ("table", "column", "constraint", "trigger") for end in (" ", "."))


def _sums(pool: ThreadConnections, ep: Endpoint, db: str, plan: checksum.TablePlan, piece: tuple[int, int] | None,
          sample: int, by_chunk: bool) -> dict[int, tuple[int, int]]:
    return checksum.sums(pool.get(ep, db), plan, piece, sample, by_chunk)


def _pin(pending: _Pending, plan: checksum.TablePlan) -> tuple[checksum.TableSums, checksum.TableSums]:
    """Both sides again, grouped by chunk: only for tables whose totals differ."""
    sides = []
    for ep in pending.endpoints:
        conn = pending.pool.get(ep, pending.database)
        sides.append(checksum.merged([pending.executor.submit(_sums, pending.pool, ep, pending.database, plan,
                                                              piece, 1, True).result()
                                      for piece in checksum.segments(conn, plan)]))
    return sides[0], sides[1]


def _compare_sequences(s: psycopg.Connection[Any], d: psycopg.Connection[Any], name: str) -> list[str]:
    source, target = _sequences(s), _sequences(d)
    problems = []
    for seq, value in sorted(source.items()):
        if seq in target and target[seq] < value:
            problems.append(f"{name}: sequence {'.'.join(seq)} is behind on the target (next {target[seq]} < {value})")
    return problems


def _sequences(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    """The value nextval() would return next, which is what 'not behind' must compare."""
    names = [(str(schema), str(name)) for schema, name in conn.execute(_SEQUENCES).fetchall()]
    if not names:
        return {}
    # One statement for all of them: a database may hold thousands, and inside a window each round trip costs.
    each = [sql.SQL("SELECT {n}::int, last_value::numeric + CASE WHEN is_called THEN 1 ELSE 0 END FROM {s}").format(
        n=sql.Literal(n), s=sql.Identifier(*seq)) for n, seq in enumerate(names)]
    rows = conn.execute(sql.SQL(" UNION ALL ").join(each)).fetchall()
    return {names[n]: int(value) for n, value in rows}


def _freshness(src: Endpoint, dst: Endpoint, name: str, checks: list[dict[str, str]]) -> list[str]:
    problems = []
    for check in checks:
        schema, _, table = check["table"].rpartition(".")
        query = sql.SQL("SELECT max({})::text FROM {}").format(sql.Identifier(check["column"]),
                                                               sql.Identifier(schema or "public", table))
        with connection(src, name) as s, connection(dst, name) as d:
            verification_session(s)  # the two values are compared as text: dates and times alike on both sides
            verification_session(d)
            left, right = s.execute(query).fetchone()[0], d.execute(query).fetchone()[0]  # type: ignore[index]
        if left != right:
            problems.append(f"{name}: freshness of {check['table']}.{check['column']}: max is {left} on the source, "
                            f"{right} on the target")
    return problems


def _compare_roles(s: psycopg.Connection[Any], d: psycopg.Connection[Any]) -> list[str]:
    roles = "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'"
    members = """SELECT r.rolname || ' in ' || g.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
                 JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname !~ '^pg_'"""
    problems = [f"role {r} is missing on the target" for r in sorted(_set(s, roles) - _set(d, roles))]
    problems += [f"membership {m} is missing on the target" for m in sorted(_set(s, members) - _set(d, members))]
    return problems


def _set(conn: psycopg.Connection[Any], query: str) -> set[str]:
    return {r[0] for r in conn.execute(query).fetchall()}


def _compare_settings(
    s: psycopg.Connection[Any], d: psycopg.Connection[Any], snapshot: FreezeSnapshot | None, databases: set[str]
) -> list[str]:
    def key(rows: Any) -> dict[tuple[str | None, str | None, str], str | None]:
        return {(r.database, r.role, r.name): r.value for r in rows if r.database is None or r.database in databases}

    expected, actual = key(before_freeze(read_settings(s), snapshot)), key(read_settings(d))
    problems = []
    # Target-only settings outside the moved databases belong to the target's own admins.
    keys = set(expected) | {k for k in actual if k[0] in databases}
    for k in sorted(keys, key=lambda k: tuple(x or "" for x in k)):
        if expected.get(k) != actual.get(k):
            where = " ".join(filter(None, [f"database {k[0]}" if k[0] else None, f"role {k[1]}" if k[1] else None])) or "server-wide"
            problems.append(f"setting {k[2]} ({where}) is {actual.get(k)!r} on the target, {expected.get(k)!r} before the freeze")
    return problems
