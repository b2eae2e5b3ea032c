"""What logical replication knows and records: readiness, the objects of one sync (named before they exist), lag.

Pure models, no I/O: steps fill them, the state machine persists them, handlers render them.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field

NAME_PREFIX = "pgmove_"
MAX_NAME_BYTES = 63


def name_prefix(migration_id: str) -> str:
    """`pgmove_<id>_`: what every publication, slot and subscription of one migration starts with.

    Slot names allow only [a-z0-9_], so the id is folded to that; room is left for a database oid.
    """
    folded = re.sub(r"[^a-z0-9_]", "_", migration_id.lower())
    return f"{NAME_PREFIX}{folded}"[: MAX_NAME_BYTES - 11] + "_"


def object_name(migration_id: str, database_oid: int) -> str:
    return f"{name_prefix(migration_id)}{database_oid}"


class KeylessTable(BaseModel):
    """A table with no primary key and no usable replica identity (UPDATE/DELETE would fail once published)."""

    database: str
    schema_name: str
    name: str
    size_bytes: int
    identity: str = "d"  # pg_class.relreplident before pgmove touched it ('d' default, 'n' nothing)
    unlogged: bool = False  # cannot be published at all: copied inside the freeze window

    @property
    def label(self) -> str:
        return f"{self.database}.{self.schema_name}.{self.name}"


class LogicalReadiness(BaseModel):
    problems: list[str] = Field(default_factory=list)  # each blocks `sync`
    warnings: list[str] = Field(default_factory=list)
    keyless: list[KeylessTable] = Field(default_factory=list)
    not_carried: list[str] = Field(default_factory=list)  # what replication does not carry, and how pgmove does
    settings: dict[str, str] = Field(default_factory=dict)  # e.g. {"source.wal_level": "logical"}
    wal_held: str = ""  # what the initial copy will make the source's slots keep, and whether that fits


class SyncDatabase(BaseModel):
    """One database's replication objects; the names are recorded before any of them is created."""

    database: str
    publication: str
    slot: str
    subscription: str


class SyncSetup(BaseModel):
    migration_id: str
    databases: list[SyncDatabase] = Field(default_factory=list)
    identity_full: list[KeylessTable] = Field(default_factory=list)  # set to REPLICA IDENTITY FULL by pgmove
    left_out: list[KeylessTable] = Field(default_factory=list)  # not published: copied inside the freeze window
    schema_fingerprint: dict[str, str] = Field(default_factory=dict)  # database -> source schema when sync started

    def database(self, name: str) -> SyncDatabase | None:
        return next((d for d in self.databases if d.database == name), None)


class DatabaseLag(BaseModel):
    database: str
    lag_bytes: int
    lag_seconds: float | None
    retained_wal_bytes: int
    tables_total: int
    tables_ready: int
    apply_errors: int
    last_error: str | None = None


class SyncStatus(BaseModel):
    at: datetime
    databases: list[DatabaseLag] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # each blocks the freeze and says what to do

    def in_sync(self, max_lag_bytes: int) -> bool:
        """Every table past its initial copy, every database within the lag threshold, nothing wrong."""
        return not self.problems and all(
            d.tables_ready == d.tables_total and d.lag_bytes <= max_lag_bytes for d in self.databases)


class HotRange(BaseModel):
    """Rows of one table that still differed at the last comparison while in sync (they were changing): compared
    again inside the window, once the source is frozen and the target drained. `low`/`high` bound an integer key;
    `modulus`/`bucket` pick rows by the hash of a key of any other type; neither: the whole table."""

    database: str
    schema_name: str
    name: str
    key: list[str] = Field(default_factory=list)
    low: int | None = None
    high: int | None = None
    modulus: int | None = None
    bucket: int | None = None

    @property
    def label(self) -> str:
        where = (f" {self.key[0]} in [{self.low}, {self.high})" if self.low is not None
                 else f" key bucket {self.bucket} of {self.modulus}" if self.modulus is not None else " (whole table)")
        return f"{self.database}: {self.schema_name}.{self.name}{where}"


class LiveVerification(BaseModel):
    """The content check run while in sync: every published table hashed by key range on the source at a snapshot,
    and on the target once it has applied past that snapshot; ranges that differed were read again, narrower,
    until they matched or the rounds ran out. What still differed is `hot`: the window compares it."""

    tables: int = 0
    # (database, schema, table) compared here that replication carries exactly: the window trusts only these (and
    # only while they are still published and subscribed) and hashes every other table whole
    verified: list[tuple[str, str, str]] = Field(default_factory=list)
    rows: int = 0  # on the source, at the first pass
    ranges: int = 0  # compared in all rounds
    rounds: int = 0
    hot: list[HotRange] = Field(default_factory=list)
    seconds: float = 0.0
    finished_at: datetime | None = None
    bytes: int = 0  # the heap of the tables compared here, at the start: with `seconds`, this pair's hashing rate
    bytes_whole: int = 0  # the heap of the tables left to the window, whole
