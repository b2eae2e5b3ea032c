"""freeze --archive NAME: a kept dump of the frozen source that checks out by its manifest and restores
into a database with nothing of the freeze in it (the restore drill)."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from pgmove.state.errors import StepFailed
from pgmove.steps import archive
from pgmove.steps.connect import Endpoint
from pgmove.steps.tools import choose_toolset, file_name

pytestmark = pytest.mark.slow

SEQUENCE_ACL = "SELECT relacl::text FROM pg_class WHERE oid = 'public.orders_id_seq'::regclass"


def with_archive_dir(pgmove, folder) -> None:  # type: ignore[no-untyped-def]
    text = pgmove.config_path.read_text()
    pgmove.config_path.write_text(text.replace("redis_url =", f'archive_dir = "{folder}"\nredis_url =', 1))


def test_an_archive_checks_out_and_restores_without_the_freeze(pgmove, source, target, tmp_path):  # type: ignore[no-untyped-def]
    """The kept archive passes its checksum manifest and restores into a scratch database with every row, the
    sequence grants as they were and none of the freeze's guards."""
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        acl_before = conn.execute(SEQUENCE_ACL).fetchone()[0]
        orders = conn.execute("SELECT count(*) FROM public.orders").fetchone()[0]
    with_archive_dir(pgmove, tmp_path / "archives")
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    asked = pgmove.do("U_ALICE", "freeze prod-old --archive drill-1")
    assert asked.returncode == 0 and "archive kept as drill-1" in asked.stdout
    done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert done["state"] == "verified", done.get("failure")
    kept = next(s for s in done["steps"] if s["name"] == "copy")["result"]["archive"]
    base = tmp_path / "archives" / "drill-1"
    assert kept["path"] == str(base) and kept["files"] > 10

    subprocess.run(["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=base, check=True)
    stem = file_name("appdb")
    listing = (base / f"{stem}.list").read_text()
    assert "pgmove_freeze" in listing
    assert all(line.startswith(";") for line in listing.splitlines() if "pgmove_freeze" in line)

    # The drill: restore appdb from the archive into a scratch database and look for the freeze.
    target.psql("-c", "CREATE DATABASE drill OWNER app")
    subprocess.run([str(target.bin_dir / "pg_restore"), "--exit-on-error", "-L", str(base / f"{stem}.list"),
                    "-d", target.admin_dsn("drill"), str(base / stem)], check=True, capture_output=True)
    target.psql("-v", "ON_ERROR_STOP=1", "-f", str(base / f"{stem}.post-restore.sql"), dbname="drill")
    with psycopg.connect(target.admin_dsn("drill")) as conn:
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone()[0] == orders
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = '_pgmove_freeze'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgmove_freeze_guard'").fetchone()[0] == 0
        assert conn.execute(SEQUENCE_ACL).fetchone()[0] == acl_before


def test_an_archive_without_a_configured_folder_is_refused_and_changes_nothing(pgmove):  # type: ignore[no-untyped-def]
    """Asking for an archive when no archive_dir is configured is refused, naming the setting, and the migration
    stays ready."""
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    refused = pgmove.do("U_ALICE", "freeze prod-old --archive drill-1")
    assert refused.returncode == 2 and "archive_dir" in refused.stderr
    assert json.loads(pgmove.do("U_ALICE", "status prod-old", "--json").stdout)["state"] == "ready"


def _tree(base) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_an_archive_name_holding_another_migrations_archive_is_refused_and_kept(source, tmp_path):  # type: ignore[no-untyped-def]
    """A name reused by a later migration: its archive is never reported as this one's, nor touched."""
    toolset = choose_toolset(15, 15)
    assert toolset is not None
    src, root = Endpoint("prod-old", source.admin_dsn()), str(tmp_path / "archives")
    said: list[str] = []

    def note(message: str, **data: object) -> None:
        said.append(message)

    first = archive.write(src, ["appdb"], toolset, root, "drill-1", 1, None, "mig-first", note, lambda: False)
    base = tmp_path / "archives" / "drill-1"
    before = _tree(base)
    assert json.loads((base / archive.MARKER).read_text())["migration"] == "mig-first"
    subprocess.run(["sha256sum", "--check", "--quiet", archive.MANIFEST], cwd=base, check=True)

    with pytest.raises(StepFailed, match="drill-1 is taken.*migration mig-first"):
        archive.write(src, ["appdb"], toolset, root, "drill-1", 1, None, "mig-second", note, lambda: False)
    assert _tree(base) == before
    # The same migration's retry keeps its own finished archive.
    again = archive.write(src, ["appdb"], toolset, root, "drill-1", 1, None, "mig-first", note, lambda: False)
    assert again["files"] == first["files"] and _tree(base) == before


def test_a_freeze_reusing_another_migrations_archive_name_stops_before_freezing(pgmove, source, tmp_path):  # type: ignore[no-untyped-def]
    """The refusal comes before the freeze touches the source: it stays writable, the old archive stays whole."""
    toolset = choose_toolset(15, 15)
    assert toolset is not None
    with_archive_dir(pgmove, tmp_path / "archives")
    archive.write(Endpoint("prod-old", source.admin_dsn()), ["appdb"], toolset, str(tmp_path / "archives"), "drill-1", 1,
                  None, "mig-earlier", lambda *a, **k: None, lambda: False)
    base = tmp_path / "archives" / "drill-1"
    before = _tree(base)
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old --archive drill-1").returncode == 0
    done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert done["state"] == "failed" and done["failure"]["step"] == "freeze"
    assert "drill-1 is taken" in done["failure"]["reason"] and "mig-earlier" in done["failure"]["reason"]
    assert done["freeze"] is None
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
    assert _tree(base) == before
