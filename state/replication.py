"""PROVISIONAL copy of the h-repl interface (/tmp/h/interface.md) so h-logic can build and test against it;
h-repl owns this file and its version wins at merge."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class KeylessTable(BaseModel):
    database: str
    schema_name: str
    name: str
    size_bytes: int


class LogicalReadiness(BaseModel):
    problems: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    keyless: list[KeylessTable] = Field(default_factory=list)
    not_carried: list[str] = Field(default_factory=list)
    settings: dict[str, str] = Field(default_factory=dict)


class SyncDatabase(BaseModel):
    database: str
    publication: str
    slot: str
    subscription: str


class SyncSetup(BaseModel):
    migration_id: str
    databases: list[SyncDatabase] = Field(default_factory=list)
    identity_full: list[KeylessTable] = Field(default_factory=list)
    left_out: list[KeylessTable] = Field(default_factory=list)
    schema_fingerprint: dict[str, str] = Field(default_factory=dict)


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
    problems: list[str] = Field(default_factory=list)

    def in_sync(self, max_lag_bytes: int) -> bool:
        return (not self.problems and all(d.tables_ready >= d.tables_total and d.lag_bytes <= max_lag_bytes
                                          for d in self.databases))
