"""The only module that talks to Redis: key scheme, compare-and-set, event streams, leases, idempotency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.client import Pipeline

from pgmove.state.announce import Announcement
from pgmove.state.config import Config, redact_url
from pgmove.state.errors import ConfigError, Conflict, Unavailable
from pgmove.state.machine import TERMINAL
from pgmove.state.models import AuditEvent, Migration
from pgmove.state.outcome import Outcome

T = TypeVar("T")

Enqueue = Callable[[Pipeline, str], None]  # (pipeline in MULTI, migration id): put the job in the same transaction
Decide = Callable[[Migration | None], Outcome]


def _text(value: Any) -> str:
    """Our client returns bytes (RQ needs that); everything pgmove stores is UTF-8 text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Keys:
    """Every key pgmove writes, built in one place (rq's `key_for` pattern)."""

    def __init__(self, prefix: str = "pgmove") -> None:
        self.prefix = prefix

    def migration(self, migration_id: str) -> str:
        return f"{self.prefix}:migration:{migration_id}"

    def events(self, migration_id: str) -> str:
        return f"{self.prefix}:migration:{migration_id}:events"

    def live(self, migration_id: str) -> str:
        """Live progress ticks: capped, apart from the audit trail so a flood never pushes a decision out."""
        return f"{self.prefix}:migration:{migration_id}:live"

    @property
    def servers(self) -> str:
        """The servers that have an `active` pointer: read instead of scanning the keyspace."""
        return f"{self.prefix}:servers"

    def per_migration(self, migration_id: str) -> list[str]:
        """Every key that lives and dies with one migration."""
        return [self.migration(migration_id), self.events(migration_id), self.live(migration_id),
                self.checkpoints(migration_id), self.chat(migration_id)]

    def active(self, server: str) -> str:
        return f"{self.prefix}:server:{server}:active"

    def target_of(self, server: str) -> str:
        """The migration that last claimed `server` as its target: written so concurrent plans collide."""
        return f"{self.prefix}:server:{server}:target"

    def lock(self, server: str) -> str:
        return f"{self.prefix}:server:{server}:lock"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idempotency:{key}"

    @property
    def chat_inbox(self) -> str:
        return f"{self.prefix}:chat:inbox"

    @property
    def chat_inbox_taken(self) -> str:
        return f"{self.prefix}:chat:inbox:taken"

    def checkpoints(self, migration_id: str) -> str:
        return f"{self.prefix}:migration:{migration_id}:checkpoints"

    def chat(self, migration_id: str) -> str:
        return f"{self.prefix}:migration:{migration_id}:chat"

    @property
    def index(self) -> str:
        return f"{self.prefix}:migrations"

    def announcement(self, server: str) -> str:
        """The server's announced maintenance window (one at a time): it lives a day past its end."""
        return f"{self.prefix}:server:{server}:announcement"

    @property
    def announced(self) -> str:
        """The servers that may have an announcement: read instead of scanning the keyspace."""
        return f"{self.prefix}:announced"

    def retired_announcement(self, announcement_id: str) -> str:
        """A cancelled window a newer one replaced: kept a day past its end, so its cancellation is still posted."""
        return f"{self.prefix}:announcement:{announcement_id}"

    @property
    def retired(self) -> str:
        """The ids of retired announcements that may still be kept."""
        return f"{self.prefix}:announcements:retired"

    @property
    def workers(self) -> str:
        """Worker id -> the Redis time of its last heartbeat."""
        return f"{self.prefix}:workers"


class RedisUnavailable(Unavailable, redis.ConnectionError):
    """Redis cannot be reached. Still a redis ConnectionError, so redis-py's retries and RQ treat it as before;
    a PgmoveError, so pgmove's edges say it in one line (exit 4 on the command line)."""


def _reporting(base: type[Any], where: str) -> type[Any]:
    """The pool's connection class, whose failures name Redis and where it is (password as ***): failing to
    connect, and the connection lost mid-command (Redis stopped under a blocking read)."""

    def translated(name: str, errors: tuple[type[Exception], ...]) -> Any:
        method = getattr(base, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except RedisUnavailable:
                raise
            except errors as exc:
                raise RedisUnavailable(f"Redis at {where} is unavailable: {exc}") from None

        return call

    lost = (redis.ConnectionError,)  # a reply error (ResponseError) is Redis answering: left as it is
    return type(f"Reporting{base.__name__}", (base,), {
        "connect_check_health": translated("connect_check_health", (redis.ConnectionError, redis.TimeoutError)),
        "read_response": translated("read_response", lost),
        "send_packed_command": translated("send_packed_command", lost),
    })


_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
# KEYS: the claim, the done mark; ARGV: now, hold (seconds, on the callers' clock), ttl. A claim that is no number
# was set by an older pgmove's claim_once, which posted right after: it counts as done.
_CLAIM_UNLESS_DONE = """
if redis.call('exists', KEYS[2]) == 1 then return 0 end
local held = redis.call('get', KEYS[1])
if held and (tonumber(held) == nil or tonumber(held) > tonumber(ARGV[1]) - tonumber(ARGV[2])) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class Store:
    def __init__(self, client: redis.Redis, prefix: str = "pgmove", max_attempts: int = 50,
                 retain_days: float = 90.0, live_events_max: int = 1000) -> None:
        self._redis = client
        self.keys = Keys(prefix)
        self.max_attempts = max_attempts
        self.retain_seconds = max(1, int(retain_days * 86400))
        self.live_events_max = live_events_max
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._claim_unless_done = client.register_script(_CLAIM_UNLESS_DONE)

    def bind(self, use: Callable[[redis.Redis], T]) -> T:
        """Hand the connection to a library that must hold it (RQ's queue and worker); nothing else gets it."""
        return use(self._redis)

    @classmethod
    def from_url(cls, url: str, prefix: str = "pgmove", max_connections: int = 64, **options: Any) -> Store:
        """`redis://[user:password@]host:port/db`, or `rediss://` for TLS (redis-py reads ssl_* query options)."""
        # A blocking pool: under a burst (Slack retries, 200 slash commands) a thread waits a moment for
        # a connection instead of failing with "Too many connections" as redis-py's default pool does.
        try:
            pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10)
        except ValueError as exc:  # its message can quote the URL, password included
            raise ConfigError(f"redis_url {redact_url(url)} is not a Redis URL: "
                              f"{str(exc).replace(url, redact_url(url))}") from None
        pool.connection_class = _reporting(pool.connection_class, redact_url(url))
        return cls(redis.Redis(connection_pool=pool), prefix, **options)

    @classmethod
    def from_config(cls, config: Config) -> Store:
        return cls.from_url(config.redis_url, retain_days=config.retain_days, live_events_max=config.live_events_max)

    def ping(self) -> None:
        """Raise RedisUnavailable unless Redis answers."""
        self._redis.ping()

    def warm_up(self, connections: int) -> None:
        """Open pool connections ahead of a burst, so the first requests do not pay for TCP and HELLO."""
        pool = self._redis.connection_pool
        taken = [pool.get_connection() for _ in range(connections)]
        for conn in taken:
            pool.release(conn)

    # -- migrations -------------------------------------------------------------------------

    def get(self, migration_id: str) -> Migration | None:
        raw = self._redis.get(self.keys.migration(migration_id))
        return Migration.model_validate_json(raw) if raw else None

    def active_for(self, server: str) -> Migration | None:
        migration_id = self._redis.get(self.keys.active(server))
        return self.get(_text(migration_id)) if migration_id else None

    def migrations(self, limit: int = 200) -> list[Migration]:
        """The most recent migrations, newest first (finished ones until their retention runs out)."""
        ids = [_text(i) for i in self._redis.zrevrange(self.keys.index, 0, limit - 1)]
        found = self._get_many(ids)
        expired = [i for i, m in zip(ids, found, strict=True) if m is None]
        if expired:
            self._redis.zrem(self.keys.index, *expired)
        return [m for m in found if m is not None]

    def active(self) -> list[Migration]:
        """The current migration of every server that has one (cut-over ones stay: the source stays frozen).

        Reads the set of servers, never SCANs: plan, status, the reaper and every `do --wait` call this."""
        servers = sorted(_text(s) for s in self._redis.smembers(self.keys.servers))
        if not servers:
            return []
        pointers: Any = self._redis.mget([self.keys.active(s) for s in servers])
        gone = [s for s, p in zip(servers, pointers, strict=True) if not p]
        if gone:  # their retention ran out
            self._redis.srem(self.keys.servers, *gone)
        found = [m for m in self._get_many([_text(p) for p in pointers if p]) if m is not None]
        return sorted(found, key=lambda m: m.created_at)

    def _get_many(self, ids: list[str]) -> list[Migration | None]:
        if not ids:
            return []
        raws: Any = self._redis.mget([self.keys.migration(i) for i in ids])
        return [Migration.model_validate_json(raw) if raw else None for raw in raws]

    def update(self, migration_id: str, decide: Decide, enqueue: Enqueue | None = None) -> Outcome:
        """Apply `decide` to the current record with compare-and-set; retried until it wins or refuses."""
        key = self.keys.migration(migration_id)
        return self._cas([key], lambda pipe: self._load(pipe, key), decide, enqueue)

    def update_server(
        self, server: str, decide: Decide, enqueue: Enqueue | None = None, others: tuple[str, ...] = ()
    ) -> Outcome:
        """Like update(), for the server's current migration (or None): creating one claims the server.

        `others` are servers `decide` checks are free (a plan's target): their claims, as source or as
        target, are watched too, so of two plans that need the same server only one can win.
        """
        active_key = self.keys.active(server)
        claims = [self.keys.target_of(server)]
        for other in others:
            claims += [self.keys.active(other), self.keys.target_of(other)]

        def load(pipe: Pipeline) -> Migration | None:
            migration_id = pipe.get(active_key)
            if not migration_id:
                return None
            key = self.keys.migration(_text(migration_id))
            pipe.watch(active_key, key)  # type: ignore[no-untyped-call]
            return self._load(pipe, key)

        return self._cas([active_key, *claims], load, decide, enqueue)

    def _cas(
        self, watch: list[str], load: Callable[[Pipeline], Migration | None], decide: Decide, enqueue: Enqueue | None
    ) -> Outcome:
        for _ in range(self.max_attempts):
            with self._redis.pipeline() as pipe:
                try:
                    pipe.watch(*watch)  # type: ignore[no-untyped-call]
                    current = load(pipe)
                    outcome = decide(current)
                    new = outcome.migration
                    if current is not None and current.id == new.id:
                        new.version = current.version + 1
                    pipe.multi()
                    self._write(pipe, new, outcome.events, claim=current is None or current.id != new.id)
                    if outcome.enqueue and enqueue is not None:
                        enqueue(pipe, new.id)
                    pipe.execute()
                    return outcome
                except redis.WatchError:
                    continue
        raise Conflict("Too many concurrent changes to this migration; try again.")

    def _load(self, pipe: Pipeline, key: str) -> Migration | None:
        raw = pipe.get(key)
        return Migration.model_validate_json(raw) if raw else None

    def _write(self, pipe: Pipeline, m: Migration, events: list[AuditEvent], claim: bool) -> None:
        pipe.set(self.keys.migration(m.id), m.model_dump_json())
        if claim:
            pipe.set(self.keys.active(m.source), m.id)
            pipe.sadd(self.keys.servers, m.source)
            pipe.zadd(self.keys.index, {m.id: m.created_at.timestamp()})
        if m.target is not None:
            pipe.set(self.keys.target_of(m.target), m.id)
        for event in events:
            pipe.xadd(self.keys.events(m.id), {"e": event.model_dump_json(exclude={"id"})})
        if m.state in TERMINAL:
            self._retire(pipe, m)

    def _retire(self, pipe: Pipeline, m: Migration) -> None:
        """A finished migration is kept `retain_days` for the record, then Redis lets it go. The server's
        pointer goes with it; a new plan's SET of that pointer clears the expiry."""
        for key in self.keys.per_migration(m.id):
            pipe.expire(key, self.retain_seconds)
        pipe.expire(self.keys.active(m.source), self.retain_seconds)

    def retention_left(self, migration_id: str) -> int | None:
        """Seconds until a finished migration expires; None while it is kept indefinitely."""
        ttl = int(self._redis.ttl(self.keys.migration(migration_id)))
        return ttl if ttl >= 0 else None

    def _follow_retention(self, migration_id: str, key: str) -> None:
        """Keys written after the migration finished (chat refs, late ticks) expire with it."""
        ttl = int(self._redis.pttl(self.keys.migration(migration_id)))
        if ttl > 0:
            self._redis.pexpire(key, ttl)

    # -- copy checkpoints: what a resumed copy may keep ---------------------------------------------

    def checkpoints(self, migration_id: str) -> set[str]:
        members: Any = self._redis.smembers(self.keys.checkpoints(migration_id))
        return {_text(m) for m in members}

    def add_checkpoint(self, migration_id: str, key: str) -> None:
        self._redis.sadd(self.keys.checkpoints(migration_id), key)
        self._follow_retention(migration_id, self.keys.checkpoints(migration_id))

    def remove_checkpoints(self, migration_id: str, keys: set[str]) -> None:
        if keys:
            self._redis.srem(self.keys.checkpoints(migration_id), *keys)

    # -- event stream -----------------------------------------------------------------------

    def append_event(self, migration_id: str, event: AuditEvent) -> str:
        """A live tick (data.tick) goes to the capped live stream: only the latest few matter, and hours of
        copying make hundreds of thousands. Everything else is the audit trail and is never trimmed."""
        payload = {"e": event.model_dump_json(exclude={"id"})}
        if event.data.get("tick"):
            key = self.keys.live(migration_id)
            stream_id = self._redis.xadd(key, payload, maxlen=self.live_events_max, approximate=True)  # type: ignore[arg-type]
        else:
            key = self.keys.events(migration_id)
            stream_id = self._redis.xadd(key, payload)  # type: ignore[arg-type]
        self._follow_retention(migration_id, key)
        return _text(stream_id)

    def latest_live(self, migration_id: str) -> AuditEvent | None:
        rows: Any = self._redis.xrevrange(self.keys.live(migration_id), count=1)
        return self._event(rows[0][0], rows[0][1]) if rows else None

    def events(self, migration_id: str, after: str = "-", count: int | None = None) -> list[AuditEvent]:
        start = "-" if after == "-" else f"({after}"
        rows: Any = self._redis.xrange(self.keys.events(migration_id), min=start, count=count)
        return [self._event(stream_id, fields) for stream_id, fields in rows]

    def recent_events(self, migration_id: str, count: int) -> list[AuditEvent]:
        """The last `count` audit events, oldest first."""
        rows: Any = self._redis.xrevrange(self.keys.events(migration_id), count=count)
        return [self._event(stream_id, fields) for stream_id, fields in reversed(rows)]

    def last_event_id(self, migration_id: str) -> str | None:
        rows: Any = self._redis.xrevrange(self.keys.events(migration_id), count=1)
        return _text(rows[0][0]) if rows else None

    def wait_events(self, migration_id: str, after: str, block_ms: int, live_after: str | None = None) -> list[AuditEvent]:
        """New audit events after `after`, and live ticks after `live_after` when given, in stream-id order;
        waits up to `block_ms` for the first (0: does not wait)."""
        streams = {self.keys.events(migration_id): after}
        if live_after is not None:
            streams[self.keys.live(migration_id)] = live_after
        reply: Any = self._redis.xread(streams, block=block_ms if block_ms > 0 else None)  # type: ignore[arg-type]
        found = [self._event(stream_id, fields) for _, rows in reply for stream_id, fields in rows]
        return sorted(found, key=lambda e: tuple(int(x) for x in (e.id or "0-0").split("-")))

    def wait_moved(self, audit_after: dict[str, str], live_after: dict[str, str], block_ms: int) -> set[str]:
        """The migrations whose audit stream has an entry after `audit_after[id]`, or whose live stream has one
        after `live_after[id]`; one blocking XREAD over all of them, returning as soon as any moves."""
        streams = {self.keys.events(i): after for i, after in audit_after.items()}
        streams |= {self.keys.live(i): after for i, after in live_after.items()}
        if not streams:
            return set()
        owner = {self.keys.events(i): i for i in audit_after} | {self.keys.live(i): i for i in live_after}
        reply: Any = self._redis.xread(streams, count=1, block=max(1, block_ms))  # type: ignore[arg-type]
        return {owner[_text(key)] for key, rows in reply or [] if rows}

    def last_live_id(self, migration_id: str) -> str | None:
        rows: Any = self._redis.xrevrange(self.keys.live(migration_id), count=1)
        return _text(rows[0][0]) if rows else None

    @staticmethod
    def _event(stream_id: Any, fields: dict[bytes, bytes]) -> AuditEvent:
        event = AuditEvent.model_validate_json(fields[b"e"])
        event.id = _text(stream_id)
        return event

    # -- where a chat edge keeps its own references (message ids, its stream cursor) ---------------

    def chat_ref(self, migration_id: str, name: str) -> str | None:
        raw = self._redis.hget(self.keys.chat(migration_id), name)
        return _text(raw) if raw else None

    def set_chat_ref(self, migration_id: str, name: str, value: str, only_if_missing: bool = False) -> bool:
        key = self.keys.chat(migration_id)
        if only_if_missing:
            done = bool(self._redis.hsetnx(key, name, value))
        else:
            self._redis.hset(key, name, value)
            done = True
        self._follow_retention(migration_id, key)
        return done

    # -- the chat inbox: requests a chat edge acked, waiting for the responder (a reliable queue) ----

    def push_chat_request(self, payload: str) -> None:
        self._redis.lpush(self.keys.chat_inbox, payload)

    def take_chat_request(self, timeout_seconds: float) -> str | None:
        """The oldest request, moved aside until done() so a responder that dies loses nothing."""
        raw = self._redis.blmove(self.keys.chat_inbox, self.keys.chat_inbox_taken, int(max(1, timeout_seconds)), "RIGHT", "LEFT")
        return _text(raw) if raw else None

    def chat_request_done(self, payload: str) -> None:
        self._redis.lrem(self.keys.chat_inbox_taken, 1, payload)

    def requeue_taken_chat_requests(self) -> int:
        """At responder start: requests a dead responder had taken go back in line."""
        moved = 0
        while self._redis.lmove(self.keys.chat_inbox_taken, self.keys.chat_inbox, "RIGHT", "RIGHT"):
            moved += 1
        return moved

    # -- per-server lock with a lease ------------------------------------------------------------

    def acquire_lock(self, server: str, token: str, lease_seconds: float) -> bool:
        return bool(self._redis.set(self.keys.lock(server), token, nx=True, px=int(lease_seconds * 1000)))

    def renew_lock(self, server: str, token: str, lease_seconds: float) -> bool:
        return bool(self._renew(keys=[self.keys.lock(server)], args=[token, int(lease_seconds * 1000)]))

    def release_lock(self, server: str, token: str) -> bool:
        return bool(self._release(keys=[self.keys.lock(server)], args=[token]))

    def lock_holder(self, server: str) -> str | None:
        token = self._redis.get(self.keys.lock(server))
        return _text(token) if token else None

    # -- worker heartbeats: whether anyone is there to run what is queued --------------------------
    # Redis's own clock on both sides, so a worker and a CLI on hosts whose clocks differ still agree.

    def _now(self) -> float:
        seconds, micros = self._redis.time()
        return float(seconds) + micros / 1e6

    def beat(self, worker_id: str) -> None:
        self._redis.zadd(self.keys.workers, {worker_id: self._now()})

    def forget_worker(self, worker_id: str) -> None:
        self._redis.zrem(self.keys.workers, worker_id)

    def workers_seen(self, within_seconds: float) -> list[str]:
        """The workers whose heartbeat is at most `within_seconds` old; long-gone ones are dropped."""
        now = self._now()
        self._redis.zremrangebyscore(self.keys.workers, "-inf", now - 86400)
        return [_text(w) for w in self._redis.zrangebyscore(self.keys.workers, now - within_seconds, "+inf")]

    # -- announced maintenance windows ------------------------------------------------------------

    def announcement(self, server: str) -> Announcement | None:
        raw = self._redis.get(self.keys.announcement(server))
        return Announcement.model_validate_json(raw) if raw else None

    def announcements(self) -> list[Announcement]:
        """Every server's announcement still kept (live, cancelled, or ended less than a day ago), by start."""
        return self._kept(self.keys.announced, self.keys.announcement)

    def retired_announcements(self) -> list[Announcement]:
        """Cancelled windows a newer announcement replaced, while kept: the notifier may owe their cancellation."""
        return self._kept(self.keys.retired, self.keys.retired_announcement)

    def _kept(self, index: str, key: Callable[[str], str]) -> list[Announcement]:
        names = sorted(_text(s) for s in self._redis.smembers(index))
        raws: Any = self._redis.mget([key(n) for n in names]) if names else []
        gone = [n for n, raw in zip(names, raws, strict=True) if not raw]
        if gone:
            self._redis.srem(index, *gone)
        return sorted((Announcement.model_validate_json(r) for r in raws if r), key=lambda a: a.start)

    def update_announcement(self, server: str, decide: Callable[[Announcement | None], Announcement]) -> Announcement:
        """Compare-and-set of the server's announcement; `decide` refuses by raising, and then nothing is written."""
        key = self.keys.announcement(server)
        for _ in range(self.max_attempts):
            with self._redis.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    old = Announcement.model_validate_json(raw) if raw else None
                    new = decide(old)
                    pipe.multi()
                    if raw and old is not None and not old.live and old.id != new.id:  # its cancellation may be unposted
                        pipe.set(self.keys.retired_announcement(old.id), raw)
                        pipe.expireat(self.keys.retired_announcement(old.id), int(old.end.timestamp()) + 86400)
                        pipe.sadd(self.keys.retired, old.id)
                    pipe.set(key, new.model_dump_json())
                    pipe.expireat(key, int(new.end.timestamp()) + 86400)
                    pipe.sadd(self.keys.announced, server)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
        raise Conflict("Too many concurrent changes to this announcement; try again.")

    # -- idempotency ---------------------------------------------------------------------------

    def claim_once(self, key: str, ttl_seconds: int = 3600) -> bool:
        """True for the first caller with this key; later callers (retries, double clicks) get False."""
        return bool(self._redis.set(self.keys.idempotency(key), b"", nx=True, ex=ttl_seconds))

    def claim_for_a_while(self, key: str, now: float, hold_seconds: float, ttl_seconds: int) -> str | None:
        """A token when the caller is to do what `key` names: it is not marked done, and nobody claimed it less
        than `hold_seconds` ago by `now` (the callers' clock). A claimer that dies leaves it to the next after that."""
        token = repr(float(now))
        keys = [self.keys.idempotency(key), self.keys.idempotency(f"{key}:done")]
        return token if self._claim_unless_done(keys=keys, args=[token, hold_seconds, ttl_seconds]) else None

    def mark_done(self, key: str, ttl_seconds: int) -> None:
        """What `key` names happened: no claim, however old, lets anyone do it again (for `ttl_seconds`)."""
        self._redis.set(self.keys.idempotency(f"{key}:done"), b"", ex=ttl_seconds)

    def claim_marks(self, key: str) -> tuple[bool, str | None]:
        """Whether what `key` names is marked done, and the token of its claim if one is kept (None: never
        claimed, or given back)."""
        held, done = self._redis.mget([self.keys.idempotency(key), self.keys.idempotency(f"{key}:done")])
        return done is not None, _text(held) if held is not None else None

    def release_claim(self, key: str, token: str) -> None:
        """Give back this caller's claim (not one taken over since): the next pass may try at once."""
        self._release(keys=[self.keys.idempotency(key)], args=[token])

    def remember(self, key: str, payload: str, ttl_seconds: int = 3600) -> None:
        self._redis.set(self.keys.idempotency(key), payload, ex=ttl_seconds)

    def recall(self, key: str) -> str | None:
        raw = self._redis.get(self.keys.idempotency(key))
        return _text(raw) if raw else None


