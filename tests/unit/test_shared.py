"""Changes to shared objects (databases, roles, memberships, passwords) read as what happened."""

from __future__ import annotations

from pgmove.steps.shared import changes


def test_shared_changes_name_each_object_and_never_show_a_password_digest():
    """Each change to a database, role, membership or password is named as what happened, and no password digest
    appears."""
    before = {"database appdb": "app UTF8", "role app": "LOGIN", "password app": "d1", "role old": "LOGIN",
              "password old": "d2", "membership app in readers": "member"}
    now = {"database appdb": "app UTF8", "database sneaky": "app UTF8", "role app": "LOGIN CREATEDB",
           "password app": "d9", "role new": "LOGIN", "password new": "d3"}
    found = changes(before, now)
    assert found == ["database sneaky was created", "membership app in readers was revoked",
                     "the password of role app was changed", "role app was changed: LOGIN -> LOGIN CREATEDB",
                     "role new was created", "role old was dropped or renamed"]
    assert not any(d in " ".join(found) for d in ("d1", "d2", "d3", "d9"))
