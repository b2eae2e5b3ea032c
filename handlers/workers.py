"""Whether a worker is there to run what a reply just queued: said in the reply, never left to guesswork."""

from __future__ import annotations

from pgmove.handlers import views
from pgmove.handlers.reply import Reply
from pgmove.state.config import Config
from pgmove.state.store import Store
from pgmove.state.work import step_due


def with_worker_note(store: Store, config: Config, reply: Reply) -> Reply:
    """The reply, told that nothing will run when its migration waits for a step and no worker beat lately."""
    m = reply.migration
    if not reply.ok or m is None or step_due(m) is None or store.workers_seen(config.worker_gone_after):
        return reply
    hint, note = views.next_hint(m), views.no_worker_text(m)
    text = reply.text.replace(hint, note) if hint in reply.text else f"{reply.text}\n{note}"
    return reply.model_copy(update={"text": text})
