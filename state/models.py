"""Pydantic records pgmove persists in Redis and prints with --json; no I/O here."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pgmove.state.announce import WindowCheck
from pgmove.state.machine import State
from pgmove.state.replication import LiveVerification, LogicalReadiness, SyncSetup, SyncStatus
from pgmove.state.report import VerificationReport
from pgmove.state.watch import Watch


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)


class StepName(StrEnum):
    PREFLIGHT = "preflight"
    FREEZE = "freeze"
    COPY = "copy"
    VERIFY = "verify"
    CUTOVER = "cutover"
    UNFREEZE = "unfreeze"
    SYNC = "sync"  # logical: roles, schema, publications, slots and subscriptions; then wait for in_sync
    DRAIN = "drain"  # logical, source frozen: wait for the target to apply everything, then sequences & co.
    SWITCH = "switch"  # logical: freeze, drain, verify and the cutover hook inside one bounded window


class StepStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ApprovalAction(StrEnum):
    FREEZE = "freeze"
    CUTOVER = "cutover"
    UNFREEZE = "unfreeze"  # writes back to the source after a cutover started


class Decision(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    VOIDED = "voided"


class Plan(Record):
    """What the operator asked for; its digest is what an approval is bound to."""

    source: str
    target: str | None = None
    databases: list[str] | None = None  # None: every non-template database
    jobs: int = 2
    method: str = "dump"
    replica_identity_full: bool = False  # logical: keyless tables get REPLICA IDENTITY FULL instead of a window copy

    def digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class DatabaseInfo(Record):
    name: str
    size_bytes: int = 0
    owner: str = ""


class PreflightReport(Record):
    source_version: str = ""
    target_version: str = ""
    tools: dict[str, str] = Field(default_factory=dict)  # program -> "path (version)"
    databases: list[DatabaseInfo] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # each blocks the freeze
    warnings: list[str] = Field(default_factory=list)
    poolers: list[str] = Field(default_factory=list)  # each pooler in front of the app: version, pool mode, mapping
    roles: list[str] = Field(default_factory=list)  # the source's roles, which the copy creates or reconciles
    read_bytes_per_second: float | None = None  # COPY from the source's largest table, measured by the preflight

    @property
    def total_bytes(self) -> int:
        return sum(db.size_bytes for db in self.databases)


class SettingRow(Record):
    """One `name=value` of pg_db_role_setting; database/role None mean 'all'."""

    database: str | None = None
    role: str | None = None
    name: str
    value: str | None = None  # None: the setting was absent


class FreezeMode(StrEnum):
    READ_ONLY = "read-only"  # reads keep working, every write fails
    NO_CONNECT = "no-connect"  # the app's roles cannot log in at all


class AclItem(Record):
    """One item of an ACL by role oid (grantee 0: PUBLIC); privileges as the ACL's letters, '*' for grant option."""

    grantee: int
    grantor: int
    privileges: str


class AclRow(Record):
    """The privileges of one object before the freeze (None: the built-in default), for exact restore."""

    database: str
    kind: str  # "sequence" or "function"
    name: str  # regclass / regprocedure text, valid on any server with the same schema
    acl: str | None
    items: list[AclItem] | None = None  # the same by role oid: what unfreeze uses, so renamed roles still parse


class RoleGrant(Record):
    """A non-superuser role's CREATEDB/CREATEROLE before the freeze took them (shared objects no guard sees)."""

    oid: int
    name: str  # at freeze time; unfreeze finds the role by oid, whatever it is called by then
    createdb: bool = False
    createrole: bool = False


class SubscriptionRow(Record):
    """A logical replication subscription on the source: its apply worker writes past every guard."""

    oid: int
    name: str
    database: str
    database_oid: int
    enabled: bool


class CutOverMark(Record):
    """On the source's own freeze record: a cutover to `target` started, so no one person may give the source writes."""

    target: str
    migration_id: str
    at: datetime


class FreezeSnapshot(Record):
    """What the freeze is about to change, recorded before the change so unfreeze is exact.

    Roles and databases are also recorded by oid: one renamed meanwhile is restored under its new
    name, one dropped is reported, and neither stops the rest of the unfreeze.
    """

    taken_at: datetime
    databases: list[str]
    settings: list[SettingRow] = Field(default_factory=list)
    mode: FreezeMode = FreezeMode.READ_ONLY
    pgmove_role: str = ""  # the only session the guards let through
    logins: list[str] = Field(default_factory=list)  # roles that could log in; no-connect turns exactly these off
    acls: list[AclRow] = Field(default_factory=list)
    label: str = ""  # what the error messages say the maintenance is
    freeze_id: str = ""  # the migration that froze: a freeze record on the server with another id is someone else's
    role_oids: dict[str, int] = Field(default_factory=dict)  # every role named above, by its name at freeze time
    database_oids: dict[str, int] = Field(default_factory=dict)
    role_grants: list[RoleGrant] = Field(default_factory=list)
    subscriptions: list[SubscriptionRow] = Field(default_factory=list)
    cut_over: CutOverMark | None = None  # set on the server's copy once a cutover started: this freeze is for good


class QuietMark(Record):
    """The server-wide half of the quiet check, taken once the freeze holds (steps/quiet.py)."""

    next_xid: int  # the first transaction id not yet handed out, with its epoch
    shared: dict[str, str] = Field(default_factory=dict)  # databases, roles, memberships, password digests
    with_passwords: bool = True  # whether password digests were recorded (the copy carries the hashes)


class MovedSource(Record):
    """What the cutover found written on the frozen source after verification: the copy lacks it, so a retry
    re-copies, starting from the source as the cutover saw it (never the cutover itself from this state)."""

    problems: list[str]
    at: datetime
    baseline: dict[str, str]  # per-database fingerprints as the cutover found them
    mark: QuietMark


class FreezeOptions(Record):
    mode: FreezeMode = FreezeMode.READ_ONLY
    grace_seconds: float | None = None  # None: the configured default
    archive: str | None = None  # keep a dump of the frozen source under archive_dir/<this>
    snapshot: bool = False  # a freeze with no target: CHECKPOINT, the snapshot hook, then unfreeze, one approval


class Approval(Record):
    id: str
    action: ApprovalAction
    requester: str
    plan_digest: str
    requested_at: datetime
    expires_at: datetime
    prior_state: State
    decision: Decision = Decision.PENDING
    window_seconds: float | None = None  # a cutover from in_sync: freeze to hook inside this many seconds
    rollback: str | None = None  # a cutover's way back and its cost, as the approver read and approved it
    window: WindowCheck | None = None  # a freeze, or a cutover from in_sync: the announced window it falls in, or not
    approver: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None


class StepRecord(Record):
    name: StepName
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None = None
    worker: str | None = None
    message: str = ""
    result: dict[str, Any] = Field(default_factory=dict)


class Lease(Record):
    """Which worker runs a step right now; the server lock with the same token proves it is alive."""

    step: StepName
    worker: str
    token: str
    started_at: datetime


class HookProcess(Record):
    """Where a started hook runs, so whoever finds its worker dead can end it: a process group on one machine
    (host and boot), and its leader's start time, so a reused process id is never signalled."""

    host: str
    boot_id: str
    pgid: int
    start_ticks: int  # the leader's start in clock ticks since boot (/proc/<pid>/stat)


class HookReport(Record):
    """What a hook did, as far as pgmove saw: whoever approves giving writes back reads the cutover hook's."""

    argv0: str
    started_at: datetime
    process: HookProcess | None = None  # recorded once it started: a worker dying mid-hook leaves it to the reaper
    label: str | None = None  # the snapshot hook's: the snapshot it was making
    lsn: str | None = None  # the snapshot hook's: the checkpoint LSN the snapshot was taken at
    finished_at: datetime | None = None  # None: started, its end never recorded (the worker died meanwhile)
    exit_status: int | None = None  # negative: ended by that signal
    timed_out: bool = False  # killed, with its children, at the time limit
    output: list[str] = Field(default_factory=list)  # the last lines of its stdout and stderr
    error: str | None = None  # it could not be started at all

    def phase(self) -> str:
        """What the thread says of it at each record: started, running (where), ended."""
        if self.finished_at is not None:
            return "ended"
        return f"running as process group {self.process.pgid} on {self.process.host}" if self.process else "started"


class PoolerBackend(Record):
    """Where a pooler database sends its clients: a server and a database on it."""

    host: str
    port: int
    dbname: str

    def describe(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


class PausedPooler(Record):
    """A pooler pgmove is pausing, recorded before PAUSE is sent: whoever finds it here with no live worker
    behind the step (the reaper, the next worker) points it back at `source` if `repointed`, then RESUMEs it."""

    name: str
    databases: list[str]
    source: dict[str, PoolerBackend]  # per pooler database, where it pointed before the switch
    paused_at: datetime
    repointed: bool = False  # set before the repoint starts: it may have happened in part
    # The include file's copy taken before the repoint (a path, never its text): pointing back restores the
    # entries from it as written, which a host/port/dbname triple cannot always say (no host=, several hosts).
    saved_file: str | None = None
    # Set once the switch succeeded, before RESUME on the target: from then on it is resumed where it points.
    stays_on_target: bool = False


class Failure(Record):
    step: StepName
    reason: str
    resume_state: State
    at: datetime


class Migration(Record):
    id: str
    source: str
    target: str | None
    state: State
    plan: Plan
    plan_digest: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    version: int = 0
    preflight: PreflightReport | None = None
    approval: Approval | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    lease: Lease | None = None
    failure: Failure | None = None
    freeze: FreezeSnapshot | None = None
    freeze_options: FreezeOptions = Field(default_factory=FreezeOptions)
    quiet_baseline: dict[str, str] | None = None
    quiet_mark: QuietMark | None = None
    verify_quick: bool = False  # the next verification is the quick one (asked for with verify --quick)  # per-database write fingerprint taken when the freeze held
    aborting: bool = False
    created_target_databases: list[str] = Field(default_factory=list)
    drop_created: bool = False  # this abort also drops created_target_databases on the target
    verification: VerificationReport | None = None
    hook: HookReport | None = None  # the cutover hook's last run
    app_pause: HookReport | None = None  # the pause_app_hook's last run: its resume hook is due where writes resume
    app_resume: HookReport | None = None  # the resume_app_hook's run while the app's pause is not over
    snapshot: HookReport | None = None  # `freeze --snapshot`: the snapshot hook's run while it has not ended
    snapshot_unfreezing: bool = False  # `freeze --snapshot` began its unfreeze: a failure resumes it, never re-freezes
    source_moved: MovedSource | None = None  # the cutover refused: the source was written to after verification
    poolers_paused: list[PausedPooler] = Field(default_factory=list)  # never left paused: see worker/reaper.py
    readiness: LogicalReadiness | None = None  # logical method: what preflight found about replication
    expected_downtime_seconds: float | None = None  # logical method: the plan's estimate of the switch's write stop
    sync_setup: SyncSetup | None = None  # replication objects, each name recorded before it is created
    sync_status: SyncStatus | None = None  # the monitor's last reading while syncing or in sync
    target_acls: list[AclRow] | None = None  # logical: the target's large-object writers' privileges, before revoked
    live_verification: LiveVerification | None = None  # the content check while in sync: what the window rechecks
    window_rollback: bool = False  # the unfreeze under way gives the source back after a failed window
    watch: Watch | None = None  # after cutover: the readings of both servers and, once done, the summary

    @property
    def source_frozen(self) -> bool:
        return self.freeze is not None

    def last_step(self, name: StepName) -> StepRecord | None:
        for step in reversed(self.steps):
            if step.name == name:
                return step
        return None


class EventKind(StrEnum):
    TRANSITION = "transition"
    DECISION = "decision"
    PROGRESS = "progress"
    STEP = "step"


class AuditEvent(Record):
    """One entry of a migration's event stream: the audit trail and the source of status updates."""

    kind: EventKind
    at: datetime
    actor: str
    message: str
    event: str | None = None
    from_state: State | None = None
    to_state: State | None = None
    step: StepName | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None  # the stream id, filled in when read back
