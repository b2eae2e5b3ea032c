"""The way back from a cutover and what it costs, written for the approver before the cutover is approved.

Only what pgmove really does: it has no reverse hook and no reverse replication, so the text never promises them.
"""

from __future__ import annotations

from pgmove.state.models import Migration


def rollback_plan(m: Migration, window: bool) -> str:
    src, dst = m.source, m.target or "the target"
    before = (f"Rollback plan. Before writes resume on {dst}: `/pgmove unfreeze {src}` (a second approver must agree "
              f"once the cutover started) gives {src} its writes back with its settings restored exactly; pgmove has no "
              f"reverse hook, so an app the cutover hook already switched must be pointed back at {src} by hand (a "
              "pooler pgmove repointed is pointed back by pgmove if the switch fails).")
    if window:
        before += f" Inside the window, a failure before the cutover hook unfreezes {src} automatically."
    if m.plan.method == "logical":
        after = (f"After writes resume on {dst}: pgmove has no reverse replication and removes the replication from "
                 f"{src} at cutover, so going back to {src} loses every write made on {dst} since the cutover unless "
                 "you copy those writes back by hand.")
    else:
        after = (f"After writes resume on {dst}: going back to {src} means the writes made on {dst} since the cutover "
                 "will be lost (pgmove copies nothing back).")
    return f"{before} {after}"
