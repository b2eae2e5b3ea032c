"""What real Slack rejects, checked the way Slack checks it (a subset of Block Kit's rules, the ones we use)."""

from __future__ import annotations

import re
from typing import Any

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_ACTION_ID = 255
MAX_BUTTON_VALUE = 2000
MAX_MESSAGE_TEXT = 40000
KNOWN_BLOCKS = {"section", "header", "context", "divider", "actions", "rich_text", "image", "input", "file"}


class SlackError(Exception):
    def __init__(self, error: str, detail: str = "") -> None:
        super().__init__(error)
        self.error, self.detail = error, detail


def check_text_object(obj: Any, limit: int, where: str) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn") or not isinstance(obj.get("text"), str):
        raise SlackError("invalid_blocks", f"{where}: not a text object")
    if not obj["text"]:
        raise SlackError("invalid_blocks", f"{where}: empty text")
    if len(obj["text"]) > limit:
        raise SlackError("invalid_blocks", f"{where}: must be less than {limit + 1} characters")


def check_blocks(blocks: Any) -> None:
    if blocks is None:
        return
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks", f"no more than {MAX_BLOCKS} items allowed")
    for i, block in enumerate(blocks):
        where = f"[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in KNOWN_BLOCKS:
            raise SlackError("invalid_blocks", f"{where}: unknown block type {kind!r}")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                raise SlackError("invalid_blocks", f"{where}: section needs text or fields")
            if "text" in block:
                check_text_object(block["text"], MAX_SECTION_TEXT, f"{where}.text")
            for j, field in enumerate(block.get("fields", [])):
                check_text_object(field, 2000, f"{where}.fields[{j}]")
        elif kind == "header":
            check_text_object(block.get("text"), MAX_HEADER_TEXT, f"{where}.text")
            if block["text"]["type"] != "plain_text":
                raise SlackError("invalid_blocks", f"{where}: header text must be plain_text")
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_CONTEXT_ELEMENTS:
                raise SlackError("invalid_blocks", f"{where}: context needs 1 to 10 elements")
            for j, element in enumerate(elements):
                check_text_object(element, MAX_SECTION_TEXT, f"{where}.elements[{j}]")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not elements or len(elements) > 25:
                raise SlackError("invalid_blocks", f"{where}: actions needs 1 to 25 elements")
            for j, element in enumerate(elements):
                _check_button(element, f"{where}.elements[{j}]")


def _check_button(element: Any, where: str) -> None:
    if element.get("type") != "button":
        raise SlackError("invalid_blocks", f"{where}: only buttons are supported here")
    check_text_object(element.get("text"), MAX_BUTTON_TEXT, f"{where}.text")
    if len(element.get("action_id", "")) > MAX_ACTION_ID:
        raise SlackError("invalid_blocks", f"{where}: action_id too long")
    if len(element.get("value", "")) > MAX_BUTTON_VALUE:
        raise SlackError("invalid_blocks", f"{where}: value too long")
    if element.get("style") not in (None, "primary", "danger"):
        raise SlackError("invalid_blocks", f"{where}: bad style")
    confirm = element.get("confirm")
    if confirm is not None:
        for key in ("title", "text", "confirm", "deny"):
            if key not in confirm:
                raise SlackError("invalid_blocks", f"{where}.confirm: missing {key}")


def check_message(text: Any, blocks: Any) -> None:
    if not text and not blocks:
        raise SlackError("no_text")
    if text and len(text) > MAX_MESSAGE_TEXT:
        raise SlackError("msg_too_long")
    check_blocks(blocks)


# What Slack turns into a notification. pgmove mentions only the workspace's people it knows, by id; a
# broadcast (<!channel>, <!here>, <!everyone>, a user group) or anyone else means data got in unescaped.
WORKSPACE_USERS = frozenset({"U_ALICE", "U_BOB", "U_CAROL", "U_DAVE", "U_PGMOVE"})
_SPECIAL = re.compile(r"<(![^>]*|@[^>|]*|#[^>|]*)(\|[^>]*)?>")


def unescaped_mentions(text: Any, blocks: Any) -> list[str]:
    """Every mention, broadcast or channel link Slack would act on that pgmove would not have made itself."""
    texts = [text or ""] + [t for b in blocks or [] for t in _texts(b)]
    return [found.group(0) for t in texts for found in _SPECIAL.finditer(t)
            if not (found.group(1).startswith("@") and found.group(1)[1:] in WORKSPACE_USERS)]


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            return [node["text"]]
        return [t for value in node.values() for t in _texts(value)]
    if isinstance(node, list):
        return [t for value in node for t in _texts(value)]
    return []
