"""The README's way to give writes back to a cut-over server by hand, run as written against a real frozen and
cut-over source: the catalog is exactly as before the freeze, and the app writes again."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from pgmove.state.models import FreezeMode
from pgmove.steps import freeze, guards, handover
from pgmove.steps.connect import Endpoint
from tests.integration.catalog import customize, snapshot
from tests.integration.freezeworld import Events

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"


def _script() -> str:
    """The SQL block of the README's by-hand steps, as an operator would copy it."""
    section = README.read_text().split("## Giving writes back to a cut-over server", 1)[1]
    by_hand = section.split("While pgmove still keeps the migration", 1)[1]
    found = re.search(r"```sql\n(.*?)```", by_hand, re.S)
    assert found is not None, "the README lost its by-hand SQL"
    return found.group(1)


@pytest.mark.parametrize("mode", [FreezeMode.NO_CONNECT, FreezeMode.READ_ONLY])
def test_the_readmes_by_hand_giveback_restores_a_cut_over_source_exactly(source, passwords, tmp_path, mode):  # type: ignore[no-untyped-def]
    """Frozen, marked cut over (so pgmove refuses it all): the README's script, run by a superuser in each database
    holding the record (the maintenance database last), leaves every setting, login, role attribute, privilege,
    trigger and schema as before the freeze, and the app writes again."""
    customize(source)
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        conn.execute("ALTER ROLE app CREATEDB")  # taken by the freeze, to be given back
    before = snapshot(source)
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    snap = freeze.capture(src, mode, "prod-old is frozen for its move to prod-new (pgmove test)", "mig-test")
    freeze.apply(src, snap, 0.5, Events())
    assert handover.mark_cut_over(src, snap, "prod-new", "mig-test", Events())
    assert snapshot(source) != before

    script = tmp_path / "giveback.sql"
    script.write_text(_script())
    holders = []
    for db in snap.databases:
        with psycopg.connect(source.admin_dsn(db), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (guards.SCHEMA,)).fetchone():
                holders.append(db)
    assert "postgres" in holders and "appdb" in holders
    for db in sorted(holders, key=lambda d: d == "postgres"):
        source.psql("-f", str(script), dbname=db)

    assert snapshot(source) == before
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        app.execute("INSERT INTO orders (customer) VALUES ('back on the old server')")
