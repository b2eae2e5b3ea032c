"""The configuration file (TOML), read once by the entry point and passed down."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pgmove.state.errors import ConfigError

SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class _Section(BaseModel):
    # A key pgmove does not know is a typo until proven otherwise (`[acess]` would silently drop every
    # access rule): refused, naming the nearest key this section has.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(unknown_key(str(key), list(cls.model_fields)))
        return data


def unknown_key(key: str, valid: list[str]) -> str:
    nearest = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if nearest:
        return f"unknown key {key!r}; did you mean {nearest[0]!r}?"
    return f"unknown key {key!r}; this section takes {', '.join(sorted(valid))}"


class Access(_Section):
    operators: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    # operating-system user -> the chat id (or ids) it may act as with `pgmove do --as`
    cli_users: dict[str, str | list[str]] = Field(default_factory=dict)

    def cli_ids(self, os_user: str) -> list[str]:
        ids = self.cli_users.get(os_user, [])
        return [ids] if isinstance(ids, str) else list(ids)


class ServerConfig(_Section):
    dsn: str
    password_env: str | None = None
    app_roles: list[str] = Field(default_factory=list)
    # argv run at cutover to switch the app to this server (it gets PGHOST etc. in its environment)
    cutover_hook: list[str] | None = None
    cutover_hook_timeout: float = 300.0
    # As a source: argv run after the freeze is approved, before anything is frozen, to stop the app's writers
    # (workers to zero, cron off); it failing leaves the server untouched. Inside a cutover window it runs first.
    pause_app_hook: list[str] | None = None
    pause_app_hook_timeout: float = Field(default=120.0, gt=0)
    # argv run where writes resume once a pause_app_hook ran: this server's after a cutover to it, the source's
    # after its unfreeze. A failure is reported in the thread; what already happened stands.
    resume_app_hook: list[str] | None = None
    resume_app_hook_timeout: float = Field(default=120.0, gt=0)
    # argv run by `freeze <server> --snapshot` while frozen, after a CHECKPOINT; the server name and a label are
    # appended as its last two arguments (and given as PGMOVE_SERVER, PGMOVE_SNAPSHOT_LABEL).
    snapshot_hook: list[str] | None = None
    snapshot_hook_timeout: float = Field(default=600.0, gt=0)
    # As a target: false leaves password hashes out of the roles pgmove creates (managed services that
    # refuse them, or teams that set new passwords on the new server).
    copy_role_passwords: bool = True

    def params(self) -> dict[str, str]:
        """The DSN's keywords (host, port, user, dbname), for display; steps let psycopg parse it for real."""
        return dsn_params(self.dsn)

    @field_validator("dsn")
    @classmethod
    def _no_password_in_dsn(cls, dsn: str) -> str:
        return _no_password(dsn, "dsn")

    @field_validator("pause_app_hook", "resume_app_hook", "snapshot_hook")
    @classmethod
    def _argv(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and (not argv or not argv[0]):
            raise ValueError("a hook must be a non-empty argv list, its program first")
        return argv


def _no_password(dsn: str, key: str) -> str:
    # Keyword form, user:password@ in a URI, and a URI's ?password= (psycopg reads all three).
    if (re.search(r"(^|\s)password\s*=", dsn) or re.search(r"://[^/@\s]*:[^/@\s]*@", dsn)
            or re.search(r"[?&]password=", dsn, re.IGNORECASE)):
        raise ValueError(f"{key} must not hold a password; put it in the environment variable named by password_env")
    return dsn


class PoolerConfig(_Section):
    """A PgBouncer in front of the app: paused, repointed and resumed around the cutover."""

    model_config = ConfigDict(extra="forbid")  # unknown keys are named by _known_keys, with the nearest one

    admin_dsn: str  # its admin console (dbname=pgbouncer), as a user in its admin_users
    password_env: str | None = None
    databases: list[str] = Field(min_length=1)  # the pooler's database names the app connects to
    # The server whose databases it serves; unset: the source of every migration (preflight checks the mapping).
    server: str | None = None
    # How it is repointed: an include file holding its [databases] section, rewritten (temp file + rename)
    # before RELOAD, when pgmove runs beside it; or a command, told PGHOST/PGPORT/PGDATABASE, never a password.
    databases_file: str | None = None
    repoint_command: list[str] | None = None
    repoint_timeout_seconds: float = Field(default=30.0, gt=0)
    # How long PAUSE may wait for the transactions running through it to end before pgmove gives up.
    pause_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        # A misspelt key would otherwise leave its default in force (a 10 s pause limit the team meant to raise).
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    near = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                    hint = f"; did you mean {near[0]}?" if near else f"; known keys: {', '.join(cls.model_fields)}"
                    raise ValueError(f"unknown key {key!r}{hint}")
        return data

    @field_validator("admin_dsn")
    @classmethod
    def _no_password_in_dsn(cls, dsn: str) -> str:
        dsn = _no_password(dsn, "admin_dsn")
        dbname = dsn_params(dsn).get("dbname")
        if dbname != "pgbouncer":
            raise ValueError(f"admin_dsn must name dbname=pgbouncer, PgBouncer's admin console, not "
                             f"{dbname!r}" + ("" if dbname else " (unset: the user name)"))
        return dsn

    @field_validator("databases")
    @classmethod
    def _named(cls, names: list[str]) -> list[str]:
        if any(not n.strip() for n in names):
            raise ValueError("a database name in databases is empty")
        if len(set(names)) != len(names):
            raise ValueError(f"databases names {sorted({n for n in names if names.count(n) > 1})} more than once")
        return names

    @field_validator("databases_file")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        if path is not None and not os.path.isabs(path):
            raise ValueError(f"databases_file must be an absolute path, not {path!r}")
        return path

    @field_validator("repoint_command")
    @classmethod
    def _argv(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and (not argv or not argv[0]):
            raise ValueError("repoint_command must be a non-empty argv list, its program first")
        return argv

    @model_validator(mode="after")
    def _one_way_to_repoint(self) -> PoolerConfig:
        if (self.databases_file is None) == (self.repoint_command is None):
            raise ValueError("set exactly one of databases_file (an include file pgmove rewrites, then RELOAD) "
                             "or repoint_command (a program that repoints it)")
        return self


def dsn_params(dsn: str) -> dict[str, str]:
    if "://" in dsn:
        url = urlsplit(dsn)
        found = {"host": url.hostname or "", "port": str(url.port or ""), "user": url.username or "",
                 "dbname": url.path.lstrip("/")}
        found.update({k: v[-1] for k, v in parse_qs(url.query).items()})
        return {k: v for k, v in found.items() if v}
    pairs = re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    return {k: v[1:-1].replace("\\'", "'") if v.startswith("'") else v for k, v in pairs}


def redact_url(url: str) -> str:
    """The URL with its password as ***: what logs, messages and errors may show of `redis_url`."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}").geturl()


def url_password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


class FreshnessCheck(_Section):
    """Verification compares max(column) of this table on both sides (e.g. the newest created_at)."""

    database: str
    table: str  # schema.table
    column: str


class Config(_Section):
    # redis://[user:password@]host:port/db, rediss:// for TLS; the password may also come from the
    # environment variable named by redis_password_env, so the file holds no secret.
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    redis_password_env: str | None = None
    # Finished migrations (cut_over, aborted) with their audit trail stay this long, then Redis drops them.
    retain_days: float = Field(default=90.0, gt=0)
    # Live progress ticks kept per migration (only the latest is shown; the audit trail is never trimmed).
    live_events_max: int = Field(default=1000, ge=10)
    access: Access = Field(default_factory=Access)
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    approval_ttl_minutes: float = 30.0
    freeze_grace_seconds: float = 30.0
    lease_seconds: float = 30.0
    # The unfreeze retries dropping a table's guard while a reader holds its lock (writes are back already);
    # after this long it fails naming the holders, and a retry removes what is left.
    unfreeze_lock_give_up_seconds: float = Field(default=60.0, gt=0)
    # The worker, its threads and the client programs it starts yield the CPU to the bot on a shared host:
    # Slack wants its ack within 3 s whatever a copy is doing.
    worker_nice: int = Field(default=10, ge=0, le=19)
    work_dir: str | None = None  # where schema dumps are staged; the system temp dir when unset
    split_table_mb: int = Field(default=256, ge=1)  # tables bigger than this are copied in ranges, concurrently
    archive_dir: str | None = None  # where `freeze --archive NAME` keeps its dumps (on the worker's host)
    tool_dirs: list[str] = Field(default_factory=list)  # extra places to look for pg_dump & co.
    queue_name: str = "pgmove"
    freshness: list[FreshnessCheck] = Field(default_factory=list)
    poolers: dict[str, PoolerConfig] = Field(default_factory=dict)
    # Logical replication: freeze and cutover from in_sync wait until every database is this close.
    sync_max_lag_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    sync_check_seconds: float = Field(default=30.0, gt=0)  # how often the monitor reads lag, errors and DDL drift
    max_retained_wal_mb: int = Field(default=10240, ge=1)  # a slot holding more WAL than this is a problem
    drain_seconds: float = Field(default=300.0, gt=0)  # the two-step path's drain waits this long, then fails
    cutover_window_seconds: float = Field(default=60.0, gt=0, le=3600)  # `cutover` from in_sync, unless --window
    # The rate the plan assumes for copying keyless tables inside the freeze (no measurement on this pair yet).
    window_copy_mb_per_second: float = Field(default=50.0, gt=0)
    # `announce`: the notice also goes to these channels (the team's channel, access.channels[0], always gets it);
    # the channel and the approvers are reminded this long before the window starts.
    announce_channels: list[str] = Field(default_factory=list)
    announce_remind_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    # After a cutover the worker watches both servers this long (0: no watch), reading them every sample period.
    watch_minutes: float = Field(default=15.0, ge=0, le=24 * 60)
    watch_sample_seconds: float = Field(default=10.0, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"{redact_url(url)} must start with redis://, rediss:// (TLS) or unix://")
        return url

    @model_validator(mode="after")
    def _redis_password_from_env(self) -> Config:
        if self.redis_password_env:
            password = os.environ.get(self.redis_password_env)
            if not password:
                raise ValueError(f"redis_password_env names {self.redis_password_env}, which is not set")
            parts = urlsplit(self.redis_url)
            if parts.password is not None:
                raise ValueError("give the Redis password in redis_url or in redis_password_env, not both")
            user = quote(parts.username or "", safe="")
            netloc = f"{user}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
            self.redis_url = parts._replace(netloc=netloc).geturl()
        return self

    @model_validator(mode="after")
    def _check_servers(self) -> Config:
        for name in self.servers:
            if not SERVER_NAME.match(name):
                raise ValueError(f"server name {name!r} must be letters, digits, '.', '_' or '-'")
        for name, pooler in self.poolers.items():
            if not SERVER_NAME.match(name):
                raise ValueError(f"pooler name {name!r} must be letters, digits, '.', '_' or '-'")
            if pooler.server is not None and pooler.server not in self.servers:
                raise ValueError(f"poolers.{name}.server names {pooler.server!r}, which is not a configured server")
        return self

    @property
    def heartbeat_seconds(self) -> float:
        """How often a worker says it is alive (with its reaper pass)."""
        return max(1.0, self.lease_seconds / 2)

    @property
    def worker_gone_after(self) -> float:
        """A worker silent this long is taken for gone: replies say nothing will run."""
        return max(10.0, 4 * self.heartbeat_seconds)

    @property
    def announce_lead(self) -> timedelta:
        return timedelta(minutes=self.announce_remind_minutes)

    @property
    def approval_ttl(self) -> timedelta:
        return timedelta(minutes=self.approval_ttl_minutes)

    def password_for(self, server: str) -> str | None:
        env = self.servers[server].password_env
        return os.environ.get(env) if env else None

    def pooler_password(self, name: str) -> str | None:
        env = self.poolers[name].password_env
        return os.environ.get(env) if env else None

    def poolers_for(self, source: str) -> list[str]:
        """The poolers a move of `source` pauses and repoints: those serving it, and those that name no server."""
        return [name for name, p in sorted(self.poolers.items()) if p.server in (None, source)]

    def secrets(self) -> list[str]:
        """Every configured password that is set, so logs can be scrubbed of them as a last line of defence."""
        found = [p for name in self.servers if (p := self.password_for(name))]
        found += [p for name in self.poolers if (p := self.pooler_password(name))]
        redis_password = url_password(self.redis_url)
        return found + ([redis_password, self.redis_url] if redis_password else [])


def load_config(path: str | os.PathLike[str] | None) -> Config:
    if path is None:
        path = os.environ.get("PGMOVE_CONFIG")
    if not path:
        raise ConfigError("No configuration file: pass --config FILE or set PGMOVE_CONFIG.")
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"Configuration file {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Configuration file {path} is not readable TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise ConfigError(f"Configuration file {path} is invalid: {problems}") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """`[servers.prod-old] unknown key 'dns'; did you mean 'dsn'?`: the table as the file spells it."""
    where = ".".join(str(part) for part in loc)
    if message.startswith("Value error, unknown key"):
        message = message.removeprefix("Value error, ")
        return f"[{where}] {message}" if where else message
    return f"{where}: {message}" if where else message
