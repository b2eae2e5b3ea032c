"""A snapshot of everything a freeze may touch, taken with plain SQL, to prove unfreeze is exact."""

from __future__ import annotations

from typing import Any

import psycopg

from pgmove.sandbox.servers import PgCluster

GLOBAL = {
    "db_role_settings": """SELECT coalesce(d.datname, '*'), coalesce(r.rolname, '*'), s.setconfig FROM pg_db_role_setting s
                           LEFT JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
                           ORDER BY 1, 2""",
    "databases": "SELECT datname, datallowconn, datacl::text, datconnlimit FROM pg_database ORDER BY 1",
    "roles": """SELECT rolname, rolcanlogin, rolsuper, rolconnlimit, rolvaliduntil, rolcreatedb, rolcreaterole,
                       rolinherit, rolreplication, rolbypassrls, oid FROM pg_roles ORDER BY 1""",
    "memberships": """SELECT roleid::regrole::text, member::regrole::text, admin_option FROM pg_auth_members
                      ORDER BY 1, 2""",
    "subscriptions": "SELECT subname, subenabled, subdbid FROM pg_subscription ORDER BY 1",
    "database_oids": "SELECT datname, oid, datdba::regrole::text FROM pg_database ORDER BY 1",
}
PER_DATABASE = {
    "relation_acls": """SELECT c.oid::regclass::text, c.relkind, c.relacl::text FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname NOT IN ('pg_toast') AND c.relkind IN ('r', 'p', 'S', 'v', 'm') ORDER BY 1""",
    "function_acls": "SELECT oid::regprocedure::text, proacl::text FROM pg_proc WHERE proacl IS NOT NULL ORDER BY 1",
    "function_acls_lo": """SELECT oid::regprocedure::text, proacl::text FROM pg_proc
                           WHERE proname IN ('lowrite', 'lo_create', 'lo_unlink', 'lo_from_bytea') ORDER BY 1""",
    "triggers": "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    "event_triggers": "SELECT evtname, evtevent, evtenabled FROM pg_event_trigger ORDER BY 1",
    "schemas": "SELECT nspname, nspacl::text FROM pg_namespace ORDER BY 1",
    "replica_identities": "SELECT oid::regclass::text, relreplident FROM pg_class WHERE relkind IN ('r', 'p') "
                          "AND relnamespace <> 'pg_catalog'::regnamespace ORDER BY 1",
    "functions": "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace <> 'pg_catalog'::regnamespace "
                 "AND pronamespace <> 'information_schema'::regnamespace ORDER BY 1",
}


def snapshot(cluster: PgCluster, databases: list[str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with psycopg.connect(cluster.admin_dsn()) as conn:
        for name, query in GLOBAL.items():
            found[name] = conn.execute(query).fetchall()
        databases = databases or [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1").fetchall()]
    for db in databases:
        with psycopg.connect(cluster.admin_dsn(db)) as conn:
            conn.execute("SET search_path = pg_catalog")
            for name, query in PER_DATABASE.items():
                found[f"{db}:{name}"] = conn.execute(query).fetchall()
    return found


def customize(cluster: PgCluster) -> None:
    """Pre-existing state a careless freeze would lose or leave changed: every kind the snapshot covers."""
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute("ALTER ROLE reporter SET default_transaction_read_only = off")  # outranks database defaults
        conn.execute("ALTER ROLE app IN DATABASE pagila SET default_transaction_read_only = off")
        conn.execute("CREATE ROLE retired LOGIN")
        conn.execute("ALTER ROLE retired NOLOGIN")  # was NOLOGIN before: must stay so
    with psycopg.connect(cluster.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("GRANT USAGE ON SEQUENCE orders_id_seq TO reporter")
        conn.execute("CREATE FUNCTION public.total_of(bigint) RETURNS numeric LANGUAGE sql AS "
                     "'SELECT total FROM orders WHERE id = $1'")
        conn.execute("REVOKE EXECUTE ON FUNCTION public.total_of(bigint) FROM PUBLIC")
        conn.execute("GRANT EXECUTE ON FUNCTION public.total_of(bigint) TO reporter")
        conn.execute("REVOKE EXECUTE ON FUNCTION lo_unlink(oid) FROM PUBLIC")
        conn.execute("GRANT EXECUTE ON FUNCTION lo_unlink(oid) TO app")
        conn.execute("CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS "
                     "'BEGIN NEW.created_at := now(); RETURN NEW; END'")
        conn.execute("CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION public.touch()")
        conn.execute("ALTER TABLE orders DISABLE TRIGGER orders_touch")
        conn.execute("CREATE FUNCTION public.audit_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
                     "'BEGIN RAISE NOTICE ''ddl''; END'")
        conn.execute("CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION public.audit_ddl()")
        conn.execute("SELECT lo_from_bytea(4242, 'hello')")
        conn.execute("ALTER LARGE OBJECT 4242 OWNER TO app")


def replication_objects(cluster: PgCluster) -> dict[str, int]:
    """Every replication slot (table-sync ones included), subscription, origin and publication on a server,
    counted with plain SQL: whoever made them, so nothing of a migration can hide under another name."""
    counts: dict[str, int] = {}
    with psycopg.connect(cluster.admin_dsn()) as conn:
        for what, query in (("slots", "SELECT count(*) FROM pg_replication_slots"),
                            ("subscriptions", "SELECT count(*) FROM pg_subscription"),
                            ("origins", "SELECT count(*) FROM pg_replication_origin")):
            counts[what] = conn.execute(query).fetchone()[0]  # type: ignore[index]
        databases = [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate").fetchall()]
    counts["publications"] = 0
    for db in databases:
        with psycopg.connect(cluster.admin_dsn(db)) as conn:
            counts["publications"] += conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0]  # type: ignore[index]
    return counts
