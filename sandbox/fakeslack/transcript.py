"""The channel as a person would read it: in order, threads under their message, private replies marked."""

from __future__ import annotations

import html
import re
from typing import Any

from pgmove.sandbox.fakeslack.server import FakeSlack

NAMES = {"U_ALICE": "alice", "U_BOB": "bob", "U_CAROL": "carol", "U_PGMOVE": "pgmove"}


def _mention(text: str) -> str:
    """As Slack shows it: mentions as names, then the escaped &, <, > as the characters."""
    named = re.sub(r"<@(\w+)>", lambda m: "@" + NAMES.get(m.group(1), m.group(1)), text)
    return named.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_blocks(blocks: list[dict[str, Any]] | None, fallback: str) -> list[str]:
    if not blocks:
        return _mention(fallback).splitlines() or [""]
    lines: list[str] = []
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            lines.append(f"== {block['text']['text']} ==")
        elif kind == "section":
            lines += _mention(block["text"]["text"]).splitlines()
        elif kind == "context":
            lines += ["   " + _mention(e["text"]) for e in block["elements"]]
        elif kind == "actions":
            lines.append("   " + "  ".join(f"[ {e['text']['text']} ]" for e in block["elements"]))
    return lines


def entries(slack: FakeSlack, channel: str) -> list[tuple[str, str, str, list[str]]]:
    """(ts, who, note, lines): the channel in order, as it reads with every thread closed."""
    found = []
    for action in slack.actions:
        found.append((action.ts, NAMES.get(action.user, action.user), "", [action.text]))
    for message in slack.channel_messages(channel):
        replies = slack.thread(message.ts)
        note = ", ".join(filter(None, [f"edited {len(message.edits)} times" if message.edits else "",
                                       f"{len(replies)} replies in its thread" if replies else ""]))
        found.append((message.ts, "pgmove", f"({note})" if note else "", render_blocks(message.blocks, message.text)))
    for e in slack.ephemerals:
        found.append((e.ts, "pgmove", f"(only {NAMES.get(e.user, e.user)} sees this)", render_blocks(e.blocks, e.text)))
    return sorted(found, key=lambda item: item[0])


def threads(slack: FakeSlack, channel: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each message that has a thread: its first line, and its replies' lines."""
    found = []
    for message in slack.channel_messages(channel):
        replies = slack.thread(message.ts)
        if replies:
            found.append((render_blocks(message.blocks, message.text)[:1],
                          [render_blocks(r.blocks, r.text) + [f"[file] {f['title']} ({len(f['content'])} bytes)"
                                                               for f in r.files] for r in replies]))
    return found


def as_text(slack: FakeSlack, channel: str) -> str:
    out = ["#db-migrations"]
    for _, who, note, lines in entries(slack, channel):
        out.append(f"{who:>8} | {lines[0]} {note}".rstrip())
        out += [f"{'':>8} | {line}" for line in lines[1:]]
    for head, replies in threads(slack, channel):
        out += ["", f"Thread of: {head[0] if head else ''}"]
        for lines in replies:
            out += [f"{'':>8} | {line}" for line in lines]
    return "\n".join(out) + "\n"


def as_html(slack: FakeSlack, channel: str) -> str:
    rows = []
    for _, who, note, lines in entries(slack, channel):
        klass = "private" if "only" in note else "msg"
        rows.append(f'<div class="{klass}"><b>{html.escape(who)}</b> <i>{html.escape(note)}</i>'
                    f'<div class="body">{"<br>".join(html.escape(line) for line in lines)}</div></div>')
    for head, replies in threads(slack, channel):
        rows.append(f"<h2>Thread of: {html.escape(head[0] if head else '')}</h2>")
        rows += [f'<div class="thread"><div class="body">{"<br>".join(html.escape(line) for line in lines)}</div></div>'
                 for lines in replies]
    style = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#1d1c1d}"
             ".msg,.private,.thread{padding:.4em .8em;border-bottom:1px solid #eee}h2{font-size:1em;margin-top:2em}"
             ".thread{margin-left:2.5em;background:#f8f8f8}.private{background:#fff8e0}.body{white-space:pre-wrap}")
    return (f"<!doctype html><meta charset=utf-8><title>#db-migrations: pgmove demo</title><style>{style}</style>"
            f"<h1>#db-migrations</h1>{''.join(rows)}")
