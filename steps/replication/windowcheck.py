"""The verification inside the logical cutover window, once the source is frozen and the target drained.

After a verification while in sync (steps/replication/liveverify.py) only what it could not settle is read:
the ranges still changing at its last pass, and, whole, every table it did not verify or that replication no
longer carries exactly (left out and copied inside the window, made since the sync began, keyless). Everything else that a verification compares (databases and roles, settings,
schema, sequences, large objects, materialized views, a write on the target) is compared as always: those
are catalog reads, and replication carries none of them. Without one, the quick verification runs instead.
"""

from __future__ import annotations

import time

from pgmove.state.models import FreezeSnapshot, QuietMark
from pgmove.state.replication import LiveVerification, SyncDatabase, SyncSetup
from pgmove.state.report import VerificationReport
from pgmove.steps.connect import Endpoint, Progress, connection, each_in_parallel
from pgmove.steps.replication import published, ranges
from pgmove.steps.verify import run as verify_run


def run(src: Endpoint, dst: Endpoint, setup: SyncSetup, freeze: FreezeSnapshot | None, progress: Progress,
        jobs: int, mark: QuietMark | None, live: LiveVerification | None) -> VerificationReport:
    databases = [d.database for d in setup.databases]
    if live is None:
        return verify_run(src, dst, databases, freeze, progress, jobs, quick=True, mark=mark)
    started = time.monotonic()
    trusted = _trusted(src, dst, setup, live)
    # A hot range of a table no longer carried (dropped, say) is not read here: a table still on both sides is hashed
    # whole by the verification below, one gone from both has nothing left to compare.
    hot = [h for h in live.hot if (h.database, h.schema_name, h.name) in trusted]
    hot_problems, hot_rows = ranges.recheck(src, dst, hot, jobs)
    report = verify_run(src, dst, databases, freeze, progress, jobs, mark=mark, trusted_tables=trusted)
    problems = [*hot_problems, *report.problems]
    note = (f"{live.tables} tables ({live.rows:,} rows) verified while in sync in {live.seconds:g}s; "
            f"{len(live.hot)} range(s) still changing then ({hot_rows:,} rows) compared again inside the window")
    return report.model_copy(update={
        "ok": not problems, "problems": problems, "notes": [note, *report.notes], "tables": report.tables + live.tables,
        "rows": report.rows + live.rows, "seconds": round(time.monotonic() - started, 2), "live_seconds": live.seconds,
        "hot_ranges": len(live.hot)})


def _trusted(src: Endpoint, dst: Endpoint, setup: SyncSetup, live: LiveVerification) -> set[tuple[str, str, str]]:
    """The tables verified while in sync that replication still carries: a table since dropped from the publication
    or the subscription would have changes the target never got, however well it matched then."""
    verified = set(live.verified)

    def still(entry: SyncDatabase) -> set[tuple[str, str, str]]:
        with connection(src, entry.database) as s, connection(dst, entry.database) as d:
            return {(entry.database, schema, name) for schema, name in published.carried(s, d, entry)} & verified

    return set().union(*each_in_parallel(still, setup.databases))
