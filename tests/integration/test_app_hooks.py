"""The runbook's human edges as real processes around real servers: the app paused before the freeze and resumed
where writes resume, a failing pause that leaves the source untouched, the standalone freeze's snapshot, and the
rollback plan the cutover approver approves."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmove.sandbox.demohooks import with_hooks
from tests.integration.catalog import customize, snapshot
from tests.integration.test_logical_flow import do_json
from tests.integration.test_worker import store_of

pytestmark = pytest.mark.slow


def hook(tmp_path: Path, name: str, status: int = 0, body: str = "") -> str:
    """A hook that appends what it saw (its name, argv, environment) to hooks.jsonl, says so, and exits `status`."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"with open({str(tmp_path / 'hooks.jsonl')!r}, 'a') as f:\n"
                    f"    f.write(json.dumps({{'hook': {name!r}, 'argv': sys.argv[1:], 'env': dict(os.environ)}}) + '\\n')\n"
                    f"{body}\n"
                    f"print({name!r} + ' says hello')\n"
                    f"sys.exit({status})\n")
    path.chmod(0o755)
    return str(path)


def ran(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "hooks.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def server_keys(pgmove: Any, server: str, **keys: object) -> None:
    """Add keys to [servers.<server>] of the test's config."""
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    pgmove.config_path.write_text(with_hooks(pgmove.config_path.read_text(), {server: lines}))


def messages(pgmove: Any, migration_id: str) -> list[str]:
    return [e.message for e in store_of(pgmove).events(migration_id)]


def first(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


def no_secret_in(seen: list[dict[str, Any]], passwords: Any) -> None:
    text = json.dumps(seen)
    for secret in passwords.all():
        assert secret not in text
    assert all("PGPASSWORD" not in h["env"] for h in seen)


def test_an_offline_move_pauses_the_app_before_the_freeze_and_resumes_it_on_the_target(pgmove, tmp_path, passwords):  # type: ignore[no-untyped-def]
    """The pause hook runs after the approval and before the freeze records anything, the resume hook of prod-new
    after the cutover hook; each one's exit status and output are lines of the thread; none sees a password."""
    pgmove.env["PGPASSWORD"] = "libpq-secret"
    server_keys(pgmove, "prod-old", pause_app_hook=[hook(tmp_path, "pause-app")],
                resume_app_hook=[hook(tmp_path, "resume-old")])
    server_keys(pgmove, "prod-new", resume_app_hook=[hook(tmp_path, "resume-new")])
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new")["state"] == "ready"
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert not ran(tmp_path), "a hook ran before the approval"
    assert do_json(pgmove, "U_BOB", "approve prod-old")["state"] == "verified"
    cutover = pgmove.do("U_ALICE", "cutover prod-old")
    assert "Rollback plan" in cutover.stdout and "pgmove gives no way back" in cutover.stdout, cutover.stdout
    done = do_json(pgmove, "U_BOB", "approve prod-old")
    assert done["state"] == "cut_over", done.get("failure")
    assert done["approval"]["rollback"].startswith("Rollback plan. Before writes resume on prod-new")

    seen = ran(tmp_path)
    assert [h["hook"] for h in seen] == ["pause-app", "resume-new"]  # prod-old's resume is for its unfreeze
    assert seen[0]["env"]["PGMOVE_SERVER"] == "prod-old" and seen[1]["env"]["PGMOVE_SERVER"] == "prod-new"
    assert seen[1]["env"]["PGPORT"] != seen[0]["env"]["PGPORT"]  # told where the app resumes
    no_secret_in(seen, passwords)
    assert "libpq-secret" not in json.dumps(seen)
    lines = messages(pgmove, done["id"])
    paused = first(lines, "pause_app_hook")
    assert "pause_app_hook" in lines[paused] and paused < first(lines, "recorded the settings")
    assert any("pause-app says hello" in line and "exit status 0" in line for line in lines)
    assert first(lines, "cutover hook") < first(lines, "resume_app_hook") < first(lines, "cut over to prod-new; ")
    assert any("resume-new says hello" in line for line in lines)
    assert "app resumed" in next(line for line in lines if line.startswith("cut over to prod-new"))


def test_a_standalone_freeze_pauses_the_app_and_its_unfreeze_resumes_it_on_the_source(pgmove, source, tmp_path, passwords):  # type: ignore[no-untyped-def]
    """With no migration planned, the pause hook runs before the guards go in and prod-old's resume hook after
    the unfreeze restored it exactly."""
    customize(source)
    before = snapshot(source)
    server_keys(pgmove, "prod-old", pause_app_hook=[hook(tmp_path, "pause-app")],
                resume_app_hook=[hook(tmp_path, "resume-old")])
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert do_json(pgmove, "U_BOB", "approve prod-old")["state"] == "frozen"
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app"]
    done = do_json(pgmove, "U_ALICE", "unfreeze prod-old")
    assert done["state"] == "ready" and done["app_pause"] is None
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app", "resume-old"]
    assert snapshot(source) == before
    lines = messages(pgmove, done["id"])
    assert first(lines, "unfrozen: settings restored exactly") >= first(lines, "resume-old says hello")
    no_secret_in(ran(tmp_path), passwords)


def test_a_failing_pause_hook_freezes_nothing_and_the_migration_is_ready_again(pgmove, source, tmp_path):  # type: ignore[no-untyped-def]
    """The pause hook exits 3: the source's catalog and settings are exactly as before, the migration is ready
    again (not failed), the thread says the status, the hook's output and what to do, and the resume hook ran."""
    customize(source)
    before = snapshot(source)
    server_keys(pgmove, "prod-old", pause_app_hook=[hook(tmp_path, "pause-app", status=3)],
                resume_app_hook=[hook(tmp_path, "resume-old")])
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new")["state"] == "ready"
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    back = do_json(pgmove, "U_BOB", "approve prod-old")
    assert back["state"] == "ready", back.get("failure")
    assert back["freeze"] is None and back["failure"] is None and back["app_pause"] is None
    assert snapshot(source) == before
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app", "resume-old"]
    said = next(line for line in messages(pgmove, back["id"]) if "exited with status 3" in line)
    assert "pause-app says hello" in said and "Nothing was frozen" in said and "`/pgmove freeze prod-old`" in said
    assert "ready again" in said
    freeze = next(s for s in back["steps"] if s["name"] == "freeze")
    assert freeze["status"] == "failed"
    # A new request and approval go through once the hook works.
    server_keys(pgmove, "prod-old", pause_app_hook_timeout=30)
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0


PROBE = """import psycopg
try:
    with psycopg.connect(DSN, password=open(SECRET).read(), autocommit=True) as c:
        c.execute("INSERT INTO orders (customer) VALUES ('during the snapshot')")
    seen = 'written'
except psycopg.Error as exc:
    seen = type(exc).__name__
open(OUT, 'w').write(seen)
"""


def snapshot_world(source: Any, tmp_path: Path, passwords: Any, status: int = 0) -> str:
    """A snapshot hook that tries an insert as the app (the test's own secret, in a file) and records the refusal."""
    secret = tmp_path / "app-password"
    secret.write_text(passwords.app)
    probe = (PROBE.replace("DSN", repr(source.tcp_dsn("app", "appdb"))).replace("SECRET", repr(str(secret)))
             .replace("OUT", repr(str(tmp_path / "probe.txt"))))
    return hook(tmp_path, "snap-volume", status=status, body=probe)


def test_freeze_snapshot_checkpoints_runs_the_hook_while_frozen_and_unfreezes_exactly(pgmove, source, tmp_path, passwords):  # type: ignore[no-untyped-def]
    """One approval: freeze, CHECKPOINT, the snapshot hook (given the server and a label, the app's insert refused
    while it runs), then the unfreeze; the thread gives the LSN, the hook's output and the write-freeze time, and
    the catalog is exactly as before."""
    customize(source)
    before = snapshot(source)
    server_keys(pgmove, "prod-old", snapshot_hook=[snapshot_world(source, tmp_path, passwords), "--zone", "a"])
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "freeze prod-old --snapshot").returncode == 0
    done = do_json(pgmove, "U_BOB", "approve prod-old")
    assert done["state"] == "ready" and done["freeze"] is None, done.get("failure")
    assert snapshot(source) == before
    assert (tmp_path / "probe.txt").read_text() == "ReadOnlySqlTransaction"
    [seen] = ran(tmp_path)
    label = seen["argv"][-1]
    assert seen["argv"] == ["--zone", "a", "prod-old", label] and label.startswith("pgmove-prod-old-")
    assert seen["env"]["PGMOVE_SNAPSHOT_LABEL"] == label
    freeze = next(s for s in done["steps"] if s["name"] == "freeze")
    lsn = freeze["result"]["checkpoint_lsn"]
    with psycopg.connect(source.admin_dsn()) as conn:
        assert conn.execute("SELECT %s::pg_lsn <= pg_current_wal_lsn()", (lsn,)).fetchone()[0]
    lines = messages(pgmove, done["id"])
    assert first(lines, "recorded the settings") < first(lines, f"CHECKPOINT on prod-old done: checkpoint LSN {lsn}") \
        < first(lines, "running the snapshot hook") < first(lines, "snap-volume succeeded (exit status 0)") \
        < first(lines, f"snapshot {label} of prod-old taken")
    final = lines[first(lines, f"snapshot {label} of prod-old taken")]
    assert lsn in final and "snap-volume says hello" in final and "writes were frozen for" in final
    no_secret_in([seen], passwords)


def test_a_failing_snapshot_hook_still_unfreezes_and_says_so(pgmove, source, tmp_path, passwords):  # type: ignore[no-untyped-def]
    """The snapshot hook exits 2: the source is unfrozen anyway, exactly as before, and the thread says no snapshot
    was taken and how to try again."""
    customize(source)
    before = snapshot(source)
    server_keys(pgmove, "prod-old", snapshot_hook=[snapshot_world(source, tmp_path, passwords, status=2)])
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "freeze prod-old --snapshot").returncode == 0
    done = do_json(pgmove, "U_BOB", "approve prod-old")
    assert done["state"] == "ready" and done["freeze"] is None, done.get("failure")
    assert snapshot(source) == before
    said = next(line for line in messages(pgmove, done["id"]) if line.startswith("NO snapshot of prod-old"))
    assert "exited with status 2" in said and "unfrozen all the same" in said and "--snapshot` again" in said


def test_freeze_snapshot_without_a_snapshot_hook_is_refused_and_changes_nothing(pgmove, source):  # type: ignore[no-untyped-def]
    """No snapshot_hook configured: `freeze --snapshot` is refused naming the key, and no request or record exists."""
    before = snapshot(source)
    refused = pgmove.do("U_ALICE", "freeze prod-old --snapshot")
    assert refused.returncode == 2 and "snapshot_hook" in refused.stdout + refused.stderr
    assert store_of(pgmove).active_for("prod-old") is None
    assert snapshot(source) == before
