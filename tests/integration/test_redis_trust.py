"""Redis is the trust anchor: a job planted in it runs no code; AUTH, ACL users and TLS work; the password never shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from pgmove.sandbox.servers import free_port, wait_until
from pgmove.state.config import Config
from pgmove.state.errors import ConfigError
from pgmove.state.store import Store
from pgmove.worker.queue import JOB, make_queue
from tests.fixtures.services import PGMOVE, REPO, cli_users
from tests.integration.helpers import CONFIG

PASSWORD = "s3cret-redis-Pw0rd"  # noqa: S105 -- a test's throwaway password


def _config(path: Path, redis_url: str, extra: str = "") -> Path:
    path.write_text(f'redis_url = "{redis_url}"\n{extra}\nqueue_name = "pgmove"\n[access]\noperators = ["U_ALICE"]\n'
                    f'approvers = ["U_BOB"]\n{cli_users()}[servers.prod-old]\ndsn = "host=127.0.0.1 port=1 user=pgmove"\n'
                    '[servers.prod-new]\ndsn = "host=127.0.0.1 port=2 user=pgmove"\n')
    return path


def _pgmove(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PGMOVE, "--config", str(config), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


class _Opener:
    """Unpickling this creates `path`: the stand-in for any code an attacker with Redis access would run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def test_a_pickled_or_foreign_job_planted_in_the_queue_runs_no_code_in_the_worker(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """RQ's default pickle runs code on load; JSON jobs name the function to import. The worker runs neither."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    pickled, imported = tmp_path / "ran-from-pickle", tmp_path / "ran-by-name"
    Queue("pgmove", connection=client).enqueue_call(JOB, args=(_Opener(str(pickled)),))  # pickle, RQ's default
    Queue("pgmove", connection=client, serializer=JSONSerializer).enqueue_call("builtins.open", args=(str(imported), "w"))
    assert client.llen("rq:queue:pgmove") == 2

    done = _pgmove(config, "worker", "--burst")

    assert not pickled.exists(), "a pickled payload planted in Redis ran code in the worker"
    assert not imported.exists(), "a job naming another function ran it in the worker"
    assert client.llen("rq:queue:pgmove") == 0, done.stderr
    assert done.returncode == 0, done.stderr
    assert make_queue(Store.from_url(redis_server.url)).failed_job_registry.count == 2  # refused, kept for a person to look at


def test_pgmove_enqueues_json_jobs_the_worker_still_runs(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """The job pgmove itself writes is JSON, readable by the worker: a plan gets its preflight run (and failed)."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url)
    assert _pgmove(config, "do", "--as", "U_ALICE", "plan prod-old prod-new").returncode == 0
    client = redis.Redis.from_url(redis_server.url)
    job_id = client.lrange("rq:queue:pgmove", 0, -1)[0].decode()
    data = client.hget(f"rq:job:{job_id}", "data")
    assert JSONSerializer.loads(zlib.decompress(data))[0] == JOB  # RQ compresses the job data
    assert _pgmove(config, "worker", "--burst").returncode == 0
    m = Store.from_url(redis_server.url).active_for("prod-old")
    assert m is not None and m.state.value == "failed" and m.failure is not None  # ran: no server at port 1


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server that takes only authenticated clients: a default password and a restricted ACL user."""
    port, base = free_port(), tmp_path / "redis-acl"
    base.mkdir()
    acl = "user pgmove on >" + PASSWORD + " ~pgmove:* ~rq:* &* +@all -@admin -@dangerous +client +info"
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--dir", str(base), "--requirepass", "default-" + PASSWORD],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    admin = redis.Redis(port=port, password="default-" + PASSWORD)
    wait_until(lambda: _pings(admin), 20, "redis-server with requirepass")
    admin.execute_command("ACL", "SETUSER", *acl.split()[1:])
    yield f"redis://pgmove:{PASSWORD}@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_an_acl_user_with_a_password_runs_the_whole_cli_and_the_password_never_shows(acl_redis, tmp_path):  # type: ignore[no-untyped-def]
    """AUTH as an ACL user limited to pgmove's and RQ's keys works for do and worker; a wrong password is refused
    without echoing either password, and neither does a debug log or an invalid URL."""
    config = _config(tmp_path / "pgmove.toml", acl_redis)
    planned = _pgmove(config, "--log-level", "DEBUG", "do", "--as", "U_ALICE", "plan prod-old prod-new")
    assert planned.returncode == 0, planned.stderr
    worked = _pgmove(config, "--log-level", "DEBUG", "worker", "--burst")
    assert worked.returncode == 0, worked.stderr
    status = _pgmove(config, "do", "--as", "U_ALICE", "--json", "status prod-old")
    assert '"failed"' in status.stdout, status.stderr

    wrong = acl_redis.replace(PASSWORD, "not-the-" + PASSWORD)
    refused = _pgmove(_config(tmp_path / "wrong.toml", wrong), "--log-level", "DEBUG", "do", "--as", "U_ALICE",
                      "--wait", "status prod-old")
    assert refused.returncode != 0
    broken = _pgmove(_config(tmp_path / "broken.toml", acl_redis.replace(":" + acl_redis.rsplit(":", 1)[1], ":port/0")), "--log-level", "DEBUG",
                     "do", "--as", "U_ALICE", "status prod-old")
    assert broken.returncode != 0
    for out in (planned, worked, status, refused, broken):
        assert PASSWORD not in out.stdout + out.stderr


def test_the_redis_password_can_come_from_the_environment_and_is_scrubbed_from_logs(monkeypatch):  # type: ignore[no-untyped-def]
    """redis_password_env keeps the secret out of the file; Config.secrets() feeds it to the log scrubber."""
    monkeypatch.setenv("PGMOVE_REDIS_PASSWORD", PASSWORD)
    config = Config.model_validate({**CONFIG, "redis_url": "rediss://pgmove@redis.example:6380/0",
                                    "redis_password_env": "PGMOVE_REDIS_PASSWORD"})
    assert config.redis_url == f"rediss://pgmove:{PASSWORD}@redis.example:6380/0"
    assert PASSWORD in config.secrets() and PASSWORD not in repr(config)
    with pytest.raises(ConfigError) as refused:
        Store.from_url(f"redis://pgmove:{PASSWORD}@127.0.0.1:port/0")
    assert PASSWORD not in str(refused.value) and "***" in str(refused.value)


def test_rediss_connects_over_tls(tmp_path):  # type: ignore[no-untyped-def]
    """A rediss:// URL with the server's CA (ssl_ca_certs) talks TLS to a TLS-only redis-server, password and all."""
    ca = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(ca),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path), "--tls-cert-file", str(ca), "--tls-key-file", str(key),
                             "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--requirepass", PASSWORD],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
        store = Store.from_url(url)
        wait_until(lambda: store.bind(_pings), 20, "redis-server over TLS")
        config = _config(tmp_path / "pgmove.toml", url)
        planned = _pgmove(config, "do", "--as", "U_ALICE", "--json", "plan prod-old prod-new")
        assert planned.returncode == 0, planned.stderr
        assert store.active_for("prod-old") is not None
        with pytest.raises(redis.ConnectionError):  # the same port without TLS: nothing speaks plain text there
            redis.Redis(port=port, password=PASSWORD, socket_timeout=2).ping()
    finally:
        proc.terminate()
        proc.wait(10)


def test_python_is_the_one_running_the_tests() -> None:
    """Guards the subprocess helpers above: they run pgmove with this interpreter."""
    assert PGMOVE[0] == sys.executable
