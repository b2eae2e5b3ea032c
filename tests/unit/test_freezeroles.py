"""The role attributes the freeze took, as the copy must carry them: the record's values, never the frozen ones."""

from __future__ import annotations

from pgmove.steps import freezeroles
from tests.unit.samples import snapshot


def test_the_copy_gets_the_attributes_the_freeze_took_as_they_were():
    """LOGIN (no-connect), CREATEDB and CREATEROLE from the record, never the frozen values."""
    assert freezeroles.before_freeze(snapshot()) == {
        "app": {"rolcanlogin": True, "rolcreatedb": True, "rolcreaterole": False},
        "ops": {"rolcreatedb": False, "rolcreaterole": True}}
    assert freezeroles.before_freeze(None) == {}
