"""An abort asked to clear the target: drop the databases pgmove itself created there, and nothing else."""

from __future__ import annotations

from psycopg import sql

from pgmove.steps.connect import Endpoint, Progress, connection


def drop_created(target: Endpoint, created: list[str], progress: Progress) -> list[str]:
    """Drop each database in `created` (the migration's own record of what it created) that still exists;
    return the ones dropped. A name pgmove did not create is never passed here."""
    dropped = []
    with connection(target) as conn:
        for name in created:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                progress(f"{name} is no longer on {target.name}; nothing to drop")
                continue
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            dropped.append(name)
            progress(f"dropped {name} on {target.name}: pgmove created it for this migration")
    return dropped
