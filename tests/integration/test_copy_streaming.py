"""One table's stream: committed only when the source sent all of it, never half."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.state.errors import StepFailed
from pgmove.steps import tables
from pgmove.steps.connect import Endpoint
from pgmove.steps.tools import choose_toolset

pytestmark = pytest.mark.slow


def test_a_stream_cut_off_midway_leaves_the_target_table_as_it_was(source, target):  # type: ignore[no-untyped-def]
    """A copy stopped midway through a table's stream leaves the target table with exactly the rows it had, and a
    second copy then brings every row."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.stream (id int, payload text)")
        conn.execute("INSERT INTO public.stream SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 100000) g")
        table = next(t for t in tables.list_tables(conn) if t.name == "stream")
    assert table.size_bytes > tables.IN_PROCESS_BYTES  # the psql path
    target.psql("-c", "CREATE DATABASE appdb")
    with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.stream (id int, payload text)")
        conn.execute("INSERT INTO public.stream VALUES (-1, 'was here before')")
    src = Endpoint("src", source.admin_dsn())
    toolset = choose_toolset(15, 15)
    assert toolset is not None
    calls = []

    def stop_after_a_few_chunks() -> bool:
        calls.append(1)
        return len(calls) > 3

    moved = tables.Moved()
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as s, \
            psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as d:
        with pytest.raises(StepFailed, match="stopped"):
            tables.copy_slice(src, s, d, "appdb", tables.Slice(table), True, True, toolset, moved, stop_after_a_few_chunks)
        assert moved.bytes > 0, "nothing streamed before the cut: the test proves nothing"
        assert d.execute("SELECT id, payload FROM public.stream").fetchall() == [(-1, "was here before")]

        tables.copy_slice(src, s, d, "appdb", tables.Slice(table), True, True, toolset, tables.Moved(), lambda: False)
        assert d.execute("SELECT count(*) FROM public.stream").fetchone()[0] == 100000
