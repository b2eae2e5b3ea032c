"""A database's own properties on the target: how it is created, and its ACL, comment and settings.

Settings come from the freeze snapshot, not the live (frozen) catalog, so nothing of the freeze reaches
the target, while a database that was read-only by design stays read-only.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.steps.catalog import DatabaseDefinition
from pgmove.steps.connect import Endpoint, connection, describe
from pgmove.steps.settings import set_statement


def create_database(d: DatabaseDefinition, target_major: int) -> sql.Composed:
    parts = [
        sql.SQL("TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(d.encoding), sql.Literal(d.collate), sql.Literal(d.ctype)),
        sql.SQL("OWNER {}").format(sql.Identifier(d.owner)),
        sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(d.connection_limit)),
    ]
    if d.locale_provider == "i" and d.icu_locale:
        locale_kw = "LOCALE" if target_major >= 17 else "ICU_LOCALE"
        parts.append(sql.SQL("LOCALE_PROVIDER icu {} {}").format(sql.SQL(locale_kw), sql.Literal(d.icu_locale)))
    return sql.SQL("CREATE DATABASE {} WITH {}").format(sql.Identifier(d.name), sql.SQL(" ").join(parts))


def apply_database_properties(
    src: Endpoint, dst: psycopg.Connection[Any], d: DatabaseDefinition, settings: list[Any]
) -> None:
    """ACL, comment and settings of the database, applied after its data (a read-only default would block the restore)."""
    with connection(src) as conn:
        acl = conn.execute(
            """
            SELECT a.privilege_type, coalesce(g.rolname, 'PUBLIC'), a.is_grantable
            FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
            WHERE d.datname = %s
            """,
            (d.name,),
        ).fetchall()
    db = sql.Identifier(d.name)
    if acl:
        dst.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        dst.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, sql.Identifier(d.owner)))
        for privilege, grantee, grantable in acl:
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            statement = sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), db, who)
            dst.execute(sql.SQL("{} WITH GRANT OPTION").format(statement) if grantable else statement)
    if d.comment:
        dst.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(d.comment)))
    for row in settings:
        if row.database == d.name and row.role is None:
            _execute_setting(dst, row)


def apply_role_settings(dst_ep: Endpoint, settings: list[Any], databases: set[str]) -> None:
    with connection(dst_ep) as dst:
        roles = {r[0] for r in dst.execute("SELECT rolname FROM pg_roles").fetchall()}
        for row in settings:
            if row.role is None and row.database is not None:
                continue  # database-wide: applied with its database
            if row.role is not None and row.role not in roles:
                continue
            if row.database is not None and row.database not in databases:
                continue
            _execute_setting(dst, row)


def _execute_setting(dst: psycopg.Connection[Any], row: Any) -> None:
    try:
        dst.execute(set_statement(row, row.value))
    except psycopg.Error as exc:
        raise StepFailed(f"could not apply setting {row.name} on the target: {describe(exc)}") from None
