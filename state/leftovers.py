"""Databases already on a target when it is planned: which an earlier pgmove migration created (and left there,
or cut over to), and the sentence that says so and what to do (the preflight's problem, read by whoever plans)."""

from __future__ import annotations

from pgmove.state.machine import State
from pgmove.state.models import Migration


def created_by(target: str, recorded: list[Migration]) -> dict[str, Migration]:
    """Database name -> the latest recorded migration that created it on `target`. Only records say so: a
    database no record claims is not pgmove's (an abort with --drop-created clears its record's names)."""
    found: dict[str, Migration] = {}
    for m in sorted(recorded, key=lambda m: m.updated_at):
        if m.target == target:
            found.update(dict.fromkeys(m.created_target_databases, m))
    return found


def collision(target: str, name: str, by: Migration | None, planning: str) -> str:
    """The preflight's problem for a database that migration `planning` would create and `target` already has."""
    drop = f'DROP DATABASE "{name.replace(chr(34), chr(34) * 2)}" WITH (FORCE)'
    if by is not None and by.state == State.CUT_OVER:
        return (f"{target} already has a database named {name}: pgmove's migration {by.id} cut {by.source} over to "
                f"it, so it holds that app's data now; pgmove never copies over a database. Leave {name} out of the "
                "plan with --databases, or choose another target.")
    if by is not None:
        who = (f"an earlier copy of this migration ({by.id})" if by.id == planning else
               f"pgmove's migration {by.id} ({by.source} -> {by.target}, {by.state.value.replace('_', ' ')})")
        return (f"{target} already has a database named {name}, created by {who} and left there; pgmove never "
                f"copies over a database. Once nobody needs it, clear it on {target} as a superuser ({drop}), "
                "then plan again.")
    return (f"{target} already has a database named {name} that no pgmove migration recorded creating: it is "
            f"someone else's, and pgmove never copies over it. Drop or rename it there ({drop} as a superuser, once "
            f"you are sure), or leave {name} out of the plan with --databases, then plan again.")
