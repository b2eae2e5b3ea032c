"""The source's side of the cutover: proof it still holds exactly what was verified, then its freeze marked for good.

Between `verified` and the cutover, anything that bypasses the guards (a superuser with
session_replication_role = replica, say) can still write to the frozen source; switching then would
lose that write. So before the target or the hook is touched, the quiet check runs again against the
freeze's own baseline (per-database fingerprints, transaction ids, databases and roles). It never
re-records that baseline: a refused cutover stays refused until a new copy takes the source as it is.

Once the source is proven quiet, its on-server freeze record is marked cut over in every database that
holds it (steps/freezerecord.py), so a store that forgot the migration cannot lead to a one-person
unfreeze of the old server. Each mark is one transaction; a retried cutover finds them on the server
and does not count them as writes past the freeze.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pgmove.state.errors import StepFailed
from pgmove.state.models import CutOverMark, FreezeSnapshot, MovedSource, QuietMark
from pgmove.steps import freezerecord, quiet
from pgmove.steps.connect import Endpoint, Progress, connection, each_in_parallel


class SourceMoved(StepFailed):
    """The frozen source was written to after verification: the copy lacks it, so the cutover must not switch."""

    def __init__(self, message: str, seen: MovedSource) -> None:
        super().__init__(message)
        self.seen = seen


def prove_quiet(src: Endpoint, target: str, migration_id: str, baseline: dict[str, str], mark: QuietMark,
                moving: list[str], progress: Progress) -> None:
    """Raise SourceMoved, naming what moved, unless the source is as it was when the freeze took hold."""
    own = _own_marks(src, _holders(src, baseline), migration_id)
    found = quiet.check(src, baseline, mark, moving, own)
    problems, now_seen = found.problems, found.now_seen
    if problems:
        seen = MovedSource(problems=problems, at=datetime.now(UTC), baseline=now_seen,
                           mark=quiet.mark(src, mark.with_passwords))
        raise SourceMoved(
            f"Cutover refused: {src.name} was written to after its copy was verified ({'; '.join(problems)}). The "
            f"freeze was overridden, perhaps by a superuser (session_replication_role) or a role that may create "
            f"databases or roles, and the copy on {target} lacks that write. Nothing was changed on {target} and the "
            f"cutover hook did not run. Find out who wrote, then `/pgmove retry {src.name}`: it copies {src.name} "
            f"again as it is now (the target's databases start over) and verifies it; then request the cutover "
            f"again. Or `/pgmove unfreeze {src.name}` to give up the move.", seen)
    notes = f"; {'; '.join(found.notes)}" if found.notes else ""
    progress(f"quiet check before the switch: nothing wrote to {src.name} since the freeze ({len(now_seen)} "
             f"databases, transaction ids, databases and roles unchanged){notes}")


def mark_cut_over(src: Endpoint, snapshot: FreezeSnapshot, target: str, migration_id: str,
                  progress: Progress) -> list[str]:
    """Mark the freeze record cut over wherever the freeze kept it; a database already marked keeps its mark."""
    present = _present(src)
    marked = snapshot.model_copy(update={"cut_over": CutOverMark(target=target, migration_id=migration_id,
                                                                  at=datetime.now(UTC))})
    done = []
    for db in _holders(src, snapshot.databases):
        if db not in present:
            continue
        with connection(src, db) as conn:
            found = freezerecord.read(conn, db)
            if found is None or (found.record is not None and found.record.cut_over is not None):
                continue
            if found.record is not None and not freezerecord.is_own(found, snapshot):
                raise StepFailed(f"{src.name} carries another freeze's record in database {db}; the cutover stops "
                                 "before the switch. Find out who froze it.")
            freezerecord.mark_cut_over(conn, marked)
            done.append(db)
    if done:
        progress(f"{src.name}'s freeze record marked as cut over to {target} in {len(done)} database(s): it stays "
                 "frozen, and no later freeze can take it over", databases=done)
    return done


def _holders(src: Endpoint, databases: list[str] | dict[str, str]) -> list[str]:
    """The maintenance database first (it holds the record from the start), then every frozen database."""
    return list(dict.fromkeys([str(src.params.get("dbname") or "postgres"), *databases]))


def _own_marks(src: Endpoint, databases: list[str], migration_id: str) -> frozenset[int]:
    present = _present(src)

    def marked_by(db: str) -> int | None:
        with connection(src, db) as conn:
            return freezerecord.cut_over_xid(conn, migration_id)

    return frozenset(x for x in each_in_parallel(marked_by, [d for d in databases if d in present]) if x is not None)


def _present(src: Endpoint) -> set[str]:
    with connection(src) as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
