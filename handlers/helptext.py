"""`help` and `help <verb>`: what each verb does, its options (from the verb's model, so they never drift) and an
example. The CLI's `pgmove help <verb>` and Slack's `/pgmove help <verb>` both come through help_reply."""

from __future__ import annotations

from pgmove.handlers.parse import USAGE, did_you_mean, grammar
from pgmove.handlers.reply import Reply
from pgmove.handlers.views import esc
from pgmove.state.errors import UsageError

WHAT: dict[str, tuple[str, str]] = {
    "help": ("Lists the commands, or explains one.", "help freeze"),
    "servers": ("Lists the servers pgmove knows: where each is and its app roles.", "servers"),
    "plan": ("Plans moving every database of <source> (or --databases) to <target>: a worker runs the preflight "
             "checks (versions, client tools, sizes, roles, problems that would block the freeze). Nothing is "
             "frozen or copied yet.", "plan prod-old prod-new --jobs 4"),
    "status": ("Shows a migration (state, steps, what comes next), or every migration in progress.",
               "status prod-old"),
    "freeze": ("Asks a second person to approve freezing writes on <server>. Once approved the worker freezes "
               "every database, copies to the planned target and verifies the copy; with no plan, it only freezes "
               "(for a volume snapshot, say).", "freeze prod-old --grace 30s"),
    "approve": ("Approves the pending freeze, cutover or unfreeze request on <server>; the approver is never the "
                "one who asked.", "approve prod-old"),
    "reject": ("Rejects the pending request on <server>; the reason is kept in the reply, the thread and the "
               "history.", "reject prod-old not during the sale"),
    "unfreeze": ("Puts <server> back exactly as it was before the freeze (settings, logins, privileges). Any time "
                 "before the cutover.", "unfreeze prod-old"),
    "verify": ("Compares the copy with the frozen source again (full, or one chunk in eight with --quick).",
               "verify prod-old"),
    "cutover": ("Asks a second person to approve switching to the verified target: it is made writable, the "
                "cutover hook switches the app, the source stays frozen for good.", "cutover prod-old"),
    "abort": ("Gives up the migration: the source is unfrozen and the migration ends. With --drop-created (while "
              "the source is frozen, before any cutover) the worker also drops the target databases pgmove created "
              "for it, and only those.", "abort prod-old --drop-created"),
    "history": ("The migration's audit trail: every transition, decision and step, with who and when.",
                "history prod-old"),
    "announce": ("Announces a maintenance window of <server> to the channel (and to `announce_channels`): the start "
                 "in UTC (now, in 2h, 14:30 today, 2026-12-24 14:30) and how long (90m, 2h, 1h30m, up to a day). The "
                 "channel and the approvers are reminded before it starts; a freeze approval says whether it falls in "
                 "the window. `announce <server> cancel` calls it off; `status` lists it.", "announce prod-old in 2h 1h30m"),
    "retry": ("Runs the failed step again (a failed copy keeps the tables it finished; after a failed "
              "verification, copies again while the source stays frozen).", "retry prod-old"),
}


def help_reply(topic: str | None) -> Reply:
    if topic and topic not in USAGE:
        raise UsageError(f"No help for {_show(topic)}{did_you_mean(topic)} Commands: {', '.join(USAGE)}.")
    return Reply(ok=True, kind="info", verb="help", text=help_text(topic))


def help_text(topic: str | None) -> str:
    if not topic:
        return "pgmove moves a PostgreSQL server, with a second person approving freeze and cutover.\n" + "\n".join(
            f"  /pgmove {esc(usage)}" for usage in USAGE.values()
        ) + "\nMore on one command: `/pgmove help <command>`."
    what, example = WHAT[topic]
    lines = [f"`/pgmove {esc(USAGE[topic])}`", esc(what)]
    model = grammar(topic)
    options = [(info.title, None if info.annotation is bool else info.description)
               for info in model.model_fields.values() if info.title and info.title.startswith("--")]
    if options:
        lines.append("Options:")
        lines += [f"  {esc(option)}" + (f": {esc(description)}" if description else " (a flag)")
                  for option, description in options]
    lines.append(f"Example: `/pgmove {esc(example)}`")
    return "\n".join(lines)


def _show(text: str) -> str:
    clean = "".join(c if c.isprintable() and c != "`" else "?" for c in text)
    return f"`{esc(clean[:30])}`"
