"""The verification report: what steps/verify.py found, as the migration record keeps it and every renderer reads it.

Its field names are a contract: `pgmove do --json` prints them, and records written before these models
(plain dicts with the same keys, some keys missing) must still load, so every field has a default. A
difference is one sentence that names where (database, table, key range, object) and what differs; its
words are what the channel, the refusal and --json show, so it stays a string.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VerifyMode(StrEnum):
    FULL = "full"  # every row hashed: what a cutover needs
    QUICK = "quick"  # one chunk in eight hashed, every row still counted
    LIVE = "live"  # hashed by key range while in sync; inside the window the ranges still changing, and the tables
    # replication does not carry, whole


class TableReport(_Part):
    """One table, both sides: exact row counts, and whether everything about it (rows, content, definition) matched."""

    table: str  # schema.name
    source_rows: int = 0
    target_rows: int = 0
    ok: bool = False
    differences: int = 0  # differences named in the database's problems: content ranges, columns, constraints, ...

    @model_validator(mode="before")
    @classmethod
    def _ok_from_counts(cls, data: Any) -> Any:
        """Records from before `ok` was kept judged a table by its row counts alone."""
        if isinstance(data, dict) and "ok" not in data:
            return {**data, "ok": data.get("source_rows", 0) == data.get("target_rows", 0)}
        return data


class LargeObjectCounts(_Part):
    source_objects: int = 0
    source_bytes: int = 0
    target_objects: int = 0
    target_bytes: int = 0


class DatabaseReport(_Part):
    database: str
    tables: int = 0
    rows: int = 0  # on the source
    problems: list[str] = Field(default_factory=list)  # this database's differences, each prefixed with its name
    table_counts: list[TableReport] = Field(default_factory=list)
    large_objects: LargeObjectCounts = Field(default_factory=LargeObjectCounts)


class VerificationReport(_Part):
    """The whole run: ok only when nothing differs anywhere (server, databases, the write test)."""

    ok: bool = False
    mode: VerifyMode = VerifyMode.FULL
    problems: list[str] = Field(default_factory=list)  # every difference, server-wide ones included: each blocks cutover
    notes: list[str] = Field(default_factory=list)  # seen, not blocking: extension versions, writes in databases not moved
    databases: list[DatabaseReport] = Field(default_factory=list)
    tables: int = 0
    rows: int = 0
    smoke: list[str] = Field(default_factory=list)  # what the write test as each app role on the target did
    seconds: float = 0.0
    source_hashed_during_copy: int = 0  # tables whose source side the copy hashed: only their target was read here
    target_hashed_during_copy: int = 0  # tables whose target side the copy hashed, proven unchanged since: reused
    live_seconds: float = 0.0  # the verification while in sync, before the window: the part outside the downtime
    hot_ranges: int = 0  # ranges still changing at its last pass, compared again inside the window
    target_changed_since_hashed: int = 0  # tables hashed on the target during the copy that changed since: read again
