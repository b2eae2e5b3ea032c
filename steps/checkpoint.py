"""CHECKPOINT on a frozen server before its volume snapshot: the snapshot then holds little WAL to replay."""

from __future__ import annotations

import psycopg

from pgmove.state.errors import StepFailed
from pgmove.steps.connect import Endpoint, connection


def checkpoint(src: Endpoint) -> str:
    """Run CHECKPOINT and return the LSN it recorded (its redo point's record), as text."""
    with connection(src) as conn:
        conn.autocommit = True
        try:
            conn.execute("CHECKPOINT")
        except psycopg.Error as exc:
            raise StepFailed(f"CHECKPOINT on {src.name} failed: {exc.diag.message_primary or exc}") from None
        try:
            row = conn.execute("SELECT checkpoint_lsn::text FROM pg_control_checkpoint()").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            # pg_control_checkpoint() is for superusers and pg_monitor unless granted: the WAL position is the
            # nearest a lesser role can say (the server is frozen, so nothing moves it but the checkpoint's own record).
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else "unknown"
