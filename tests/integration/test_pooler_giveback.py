"""A pooler is always given back as it was found: an include-file entry restored exactly as written (no host=),
the file's owner and symlink kept, a pause someone else holds never taken over, problems said at preflight."""

from __future__ import annotations

import os
import pwd

import pytest

from pgmove.sandbox.pgbouncer import PgBouncer
from pgmove.state.errors import StepFailed
from pgmove.state.models import PausedPooler, PoolerBackend
from pgmove.steps import poolercheck, poolerfile
from pgmove.steps.connect import Endpoint
from pgmove.steps.pooler import Pooler
from pgmove.steps.poolerswitch import PoolerSwitch, release


def pooler(bouncer: PgBouncer, **options: object) -> Pooler:
    settings: dict[str, object] = {"databases_file": str(bouncer.databases_file), "pause_timeout": 5.0,
                                   "password": bouncer.admin_password, **options}
    return Pooler(name="app", admin_dsn=bouncer.admin_dsn(), databases=("appdb",), **settings)  # type: ignore[arg-type]


def source_endpoint(source) -> Endpoint:  # type: ignore[no-untyped-def]
    return Endpoint("prod-old", source.tcp_dsn("pgmove"))


def reload(bouncer: PgBouncer) -> None:
    with bouncer.admin() as conn:
        conn.execute("RELOAD")


def test_an_entry_without_host_is_put_back_as_written_when_the_cutover_fails_after_the_repoint(source, target, pgbouncer):  # type: ignore[no-untyped-def]
    """An appdb entry with no host= (PgBouncer's Unix socket) is repointed, and on a later failure restored byte
    for byte and resumed on the source; the saved copy is gone and nothing stays recorded as paused."""
    text = ("; hand-kept\n[databases]\n# comment\n"
            f"appdb = port={source.port}   dbname=appdb pool_size=7\n"
            f"other = host=127.0.0.1 port={source.port} dbname=postgres\n")
    pgbouncer.databases_file.write_text(text)
    reload(pgbouncer)
    p = pooler(pgbouncer)
    assert not poolercheck.check([p], source_endpoint(source), ["appdb"], 40, "127.0.0.1").problems
    records: list[list[PausedPooler]] = []
    with pytest.raises(RuntimeError), PoolerSwitch([p], "127.0.0.1", target.port, print, records.append, set()) as sw:
        sw.repoint()
        assert pgbouncer.database("appdb")["port"] == target.port
        raise RuntimeError("the cutover fails after the repoint")
    assert pgbouncer.databases_file.read_text() == text
    row = pgbouncer.database("appdb")
    assert (row["host"], row["port"], row["paused"]) == (None, source.port, 0)
    assert records[-1] == []
    assert not [f for f in os.listdir(pgbouncer.base) if f.startswith(".pgmove")]


def test_preflight_reads_the_include_file(source, pgbouncer):  # type: ignore[no-untyped-def]
    """A databases_file with no entry for a configured database, or a target host the rewrite cannot write, is a
    preflight problem naming it, not a cutover that fails with the app paused."""
    pgbouncer.databases_file.write_text(f"[databases]\nother = host=127.0.0.1 port={source.port} dbname=postgres\n")
    found = poolercheck.check([pooler(pgbouncer)], source_endpoint(source), ["appdb"], 40, "127.0.0.1")
    assert any("has no entry for appdb" in p for p in found.problems), found.problems
    pgbouncer.databases_file.write_text(f"[databases]\nappdb = host=127.0.0.1 port={source.port} dbname=appdb\n")
    found = poolercheck.check([pooler(pgbouncer)], source_endpoint(source), ["appdb"], 40, "db1,db2")
    assert any("cannot take the target's host 'db1,db2'" in p for p in found.problems), found.problems


def test_an_unset_password_variable_is_named_at_preflight(source, pgbouncer):  # type: ignore[no-untyped-def]
    """password_env naming a variable the worker does not have is a preflight problem that names the variable."""
    p = pooler(pgbouncer, password=None, password_env="PGMOVE_NOT_SET_ANYWHERE")
    found = poolercheck.check([p], source_endpoint(source), ["appdb"], 40, "127.0.0.1")
    assert found.problems == ["pooler app's password_env names PGMOVE_NOT_SET_ANYWHERE, which is not set in the "
                              "worker's environment"]


def _as(uid: int, gid: int, work) -> str:  # type: ignore[no-untyped-def]
    """Run `work` in a forked child as uid/gid (the kernel, not a mock, says what that user may do); its outcome."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            outcome = str(work())
        except StepFailed as exc:
            outcome = "refused: " + exc.message
        except BaseException as exc:  # noqa: BLE001 - whatever happened goes back to the test
            outcome = f"error: {exc!r}"
        os.write(write, outcome.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        said = f.read()
    os.waitpid(pid, 0)
    return said


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as two other users")
def test_a_rewrite_that_cannot_keep_the_owner_is_refused_and_changes_nothing(pgbouncer):  # type: ignore[no-untyped-def]
    """pgmove running as a user that may write the directory but cannot chown refuses the rewrite (file, owner and
    mode unchanged) and says so at preflight, instead of leaving a file the pooler's user cannot read."""
    nobody = pwd.getpwnam("nobody")
    path = pgbouncer.databases_file
    text = path.read_text()
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    path.chmod(0o644)
    pgmove = os.stat(pgbouncer.base)  # the sandbox user, who owns (and may write) the directory
    wanted = {"appdb": PoolerBackend(host="127.0.0.1", port=1, dbname="appdb")}
    said = _as(pgmove.st_uid, pgmove.st_gid, lambda: poolerfile.rewrite(str(path), wanted))
    assert said.startswith("refused: ") and "nothing was changed" in said, said
    info = os.stat(path)
    assert (path.read_text(), info.st_uid, info.st_mode & 0o777) == (text, nobody.pw_uid, 0o644)
    problems = _as(pgmove.st_uid, pgmove.st_gid, lambda: poolerfile.problems(str(path), ["appdb"], "127.0.0.1"))
    assert f"belongs to uid {nobody.pw_uid}" in problems, problems


def test_a_database_paused_by_an_operator_is_left_to_them(source, target, pgbouncer):  # type: ignore[no-untyped-def]
    """A database an operator already PAUSEd is a preflight problem, and a switch refuses it, naming it, without
    touching it: it stays paused and pointed at the source (pgmove never RESUMEs a pause it did not take)."""
    with pgbouncer.admin() as conn:
        conn.execute("PAUSE appdb")
    p = pooler(pgbouncer)
    found = poolercheck.check([p], source_endpoint(source), ["appdb"], 40, "127.0.0.1")
    assert any("appdb is already paused by someone else" in m for m in found.problems), found.problems
    records: list[list[PausedPooler]] = []
    with pytest.raises(StepFailed) as caught, PoolerSwitch([p], "127.0.0.1", target.port, print, records.append, set()):
        pass
    assert "already paused by someone else: RESUME it" in caught.value.message
    row = pgbouncer.database("appdb")
    assert (row["paused"], row["port"]) == (1, source.port)
    assert not any(records), records
    with pgbouncer.admin() as conn:
        conn.execute("RESUME appdb")


def test_a_symlinked_include_file_is_written_through(source, target, pgbouncer):  # type: ignore[no-untyped-def]
    """A databases_file that is a symlink stays a symlink: the repoint and the point back write its target."""
    link = pgbouncer.base / "current.ini"
    link.symlink_to(pgbouncer.databases_file)
    text = pgbouncer.databases_file.read_text()
    p = pooler(pgbouncer, databases_file=str(link))
    with pytest.raises(RuntimeError), PoolerSwitch([p], "127.0.0.1", target.port, print, lambda _: None, set()) as sw:
        sw.repoint()
        assert link.is_symlink() and f"port={target.port}" in pgbouncer.databases_file.read_text()
        raise RuntimeError("the cutover fails after the repoint")
    assert link.is_symlink() and pgbouncer.databases_file.read_text() == text
    assert pgbouncer.database("appdb")["port"] == source.port


def test_a_worker_dead_after_the_repoint_leaves_enough_to_restore_the_entry_as_written(source, target, pgbouncer):  # type: ignore[no-untyped-def]
    """The record a dead worker leaves names the saved copy: the reaper's release restores the hostless entry
    byte for byte, resumes on the source and removes the copy."""
    text = f"[databases]\nappdb = port={source.port} dbname=appdb\n"
    pgbouncer.databases_file.write_text(text)
    reload(pgbouncer)
    records: list[list[PausedPooler]] = []
    switch = PoolerSwitch([pooler(pgbouncer)], "127.0.0.1", target.port, print, records.append, set())
    switch.__enter__()
    switch.repoint()  # and the worker dies here: no __exit__
    left = records[-1]
    assert left[0].repointed and left[0].saved_file and os.path.exists(left[0].saved_file)
    assert pgbouncer.database("appdb")["port"] == target.port
    assert release({"app": pooler(pgbouncer)}, left, set(), print) == []
    assert pgbouncer.databases_file.read_text() == text
    row = pgbouncer.database("appdb")
    assert (row["host"], row["port"], row["paused"]) == (None, source.port, 0)
    assert not os.path.exists(left[0].saved_file)
