"""How fast the source gives its table data now: a short COPY of its largest table, read and thrown away, so a plan
can say how long a freeze is expected to last before anyone approves one."""

from __future__ import annotations

import time

from psycopg import sql

from pgmove.steps.connect import Endpoint, connection

SAMPLE_SECONDS = 1.0
SAMPLE_BYTES = 64 * 1024 * 1024

_LARGEST = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
    ORDER BY pg_relation_size(c.oid) DESC LIMIT 1
"""


def measure(src: Endpoint, database: str) -> float | None:
    """Bytes per second COPY reads from the largest table of `database`, over at most a second or 64 MB (the
    rest is cancelled); None when it has no table with data to read."""
    with connection(src, database) as conn:
        conn.autocommit = True
        found = conn.execute(_LARGEST).fetchone()
        if found is None:
            return None
        read, started = 0, time.monotonic()
        with conn.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(*found))) as copy:
            for chunk in copy:
                read += len(chunk)
                if read >= SAMPLE_BYTES or time.monotonic() - started >= SAMPLE_SECONDS:
                    break  # psycopg cancels the rest of the COPY
        elapsed = time.monotonic() - started
    return read / elapsed if read and elapsed > 0 else None
