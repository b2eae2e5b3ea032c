"""The way back from a cutover and what it costs, written for the approver before the cutover is approved.

Only what pgmove really does: it has no reverse hook and no reverse replication, and once the cutover succeeded
the state machine has no way out of cut_over (every verb below is refused there), so the text never promises them.
What is left after that is the manual way, said step by step.
"""

from __future__ import annotations

from pgmove.state.models import Migration

# What pgmove refuses for a cut-over source, as the text says it (tests hold the verbs to it).
REFUSED_AFTER_CUTOVER = ("unfreeze", "abort", "freeze", "plan", "retry")
MANUAL_SECTION = "Giving writes back to a cut-over server"  # the README's section with the superuser's SQL


def rollback_plan(m: Migration, window: bool) -> str:
    src, dst = m.source, m.target or "the target"
    before = (f"Rollback plan. Before writes resume on {dst}: `/pgmove unfreeze {src}` (a second approver must agree "
              f"once the cutover started) gives {src} its writes back with its settings restored exactly; pgmove has no "
              f"reverse hook, so an app the cutover hook already switched must be pointed back at {src} by hand, and "
              f"what it wrote on {dst} meanwhile is not copied back (a pooler pgmove repointed is pointed back by pgmove "
              "if the switch fails).")
    if window:
        before += f" Inside the window, a failure before the cutover hook unfreezes {src} automatically."
    refused = ", ".join(f"`{verb}`" for verb in REFUSED_AFTER_CUTOVER[:-1]) + f" and `{REFUSED_AFTER_CUTOVER[-1]}`"
    gone = " (the cutover removes the replication; there is no reverse replication)" if m.plan.method == "logical" else ""
    after = (f"After the cutover succeeds, pgmove gives no way back: {src} stays frozen for good with the data it had "
             f"at the freeze; pgmove refuses {refused} of {src} (a freeze even once it has forgotten the migration: "
             f"{src} carries the cut-over mark), and copies nothing from {dst} back{gone}. Going back is by hand and "
             f"loses every write made on {dst} since the cutover that you do not copy back yourself: 1. stop the app's "
             f"writes on {dst}; 2. as a superuser, give {src} its writes back (pgmove's README, \"{MANUAL_SECTION}\"); "
             f"3. copy what must be kept from {dst} to {src}; 4. point the app at {src}.")
    return f"{before} {after}"
