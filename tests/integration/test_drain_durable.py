"""The cutover window drains to the freeze's durable position: nothing acknowledged lies beyond it, even with
asynchronous commit and a large transaction that commits during the freeze's grace period."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from pgmove.state.models import FreezeMode
from pgmove.steps import freeze
from pgmove.steps.replication import drain
from tests.integration.freezeworld import Events
from tests.integration.test_replication_steps import endpoints, rows, start, toolset_for, wait_in_sync
from tests.integration.writer import Writer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("target_name", ["target", "target18"])
def test_asynchronous_commits_and_a_commit_in_the_grace_period_are_all_drained(source, passwords, tmp_path, request,  # type: ignore[no-untyped-def]
                                                                               target_name):
    """The app commits asynchronously while a 200,000-row transaction opened before the freeze commits inside its
    grace period: drained to the freeze's durable position, every acknowledged insert and all 200,000 rows are on
    the target."""
    target = request.getfixturevalue(target_name)
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        conn.execute("ALTER ROLE app SET synchronous_commit = off")
    src, dst = endpoints(source, target, passwords)
    done = start(src, dst, toolset_for(source, target), tmp_path)
    wait_in_sync(src, dst, done)
    writer = Writer(source.tcp_dsn("app", "appdb"), passwords.app).start()
    big = psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app)
    big.execute("INSERT INTO orders (customer, total) SELECT 'big', g FROM generate_series(1, 200000) g")
    wait_until_written = threading.Event()

    def commit_in_the_grace() -> None:
        wait_until_written.wait(30)
        big.commit()

    committer = threading.Thread(target=commit_in_the_grace)
    committer.start()
    snap = freeze.capture(src, FreezeMode.READ_ONLY, "drain test", "f1")

    def progress(message: str, **data: object) -> None:
        if "get 3s to finish" in message:  # the freeze waits on the open transaction: commit it now
            wait_until_written.set()

    frozen = freeze.apply(src, snap, 3.0, progress)
    committer.join()
    writer.stop()
    try:
        drain.run(src, dst, done, time.monotonic() + 60, Events(), lambda: False, frozen["durable_lsn"])
        acknowledged = {i for i, _ in writer.acknowledged}
        assert acknowledged and acknowledged <= {r[0] for r in rows(target, "appdb", "SELECT id FROM orders")}
        assert rows(target, "appdb", "SELECT count(*) FROM orders WHERE customer = 'big'") == [(200000,)]
    finally:
        big.close()
        freeze.unfreeze(src, snap, Events(), grace_seconds=0.5)
