"""Tolerant parsing of what a generator wrote: a JSON list (also inside a ```json fence or after some
prose) of {question, answer} objects or of conversations, else `Q:`/`A:` (or `User:`/`Assistant:`)
lines. What cannot be parsed is counted by the caller, never fatal.
"""

from __future__ import annotations

import json
import re
from typing import Any

Pair = tuple[str, str]
Messages = list[dict[str, str]]


def _json_values(text: str) -> list[Any]:
    """Every top-level JSON list or object found in `text`, in order."""
    decoder = json.JSONDecoder()
    out, i = [], 0
    while True:
        starts = [p for p in (text.find("[", i), text.find("{", i)) if p != -1]
        if not starts:
            return out
        i = min(starts)
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        out.append(value)
        i = end


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _pair(obj: Any) -> Pair | None:
    if not isinstance(obj, dict):
        return None
    lower = {str(k).lower(): v for k, v in obj.items()}
    q = _text(lower.get("question") or lower.get("q"))
    a = _text(lower.get("answer") or lower.get("a"))
    return (q, a) if q and a else None


_QA_LINE = re.compile(r"^\s*(?:[-*\d.)\s]*)\**\s*(Q|Question|A|Answer)\s*\d*\s*\**\s*[:.]\s*(.*)$", re.I)


def parse_pairs(text: str) -> list[Pair]:
    """Question-answer pairs from a completion; an empty list when nothing parses."""
    for value in _json_values(text):
        items = value if isinstance(value, list) else [value]
        pairs = [p for p in map(_pair, items) if p]
        if pairs:
            return pairs
    pairs: list[Pair] = []
    question: list[str] | None = None
    answer: list[str] | None = None
    for line in text.splitlines():
        m = _QA_LINE.match(line)
        if m and m.group(1).lower().startswith("q"):
            if question and answer:
                pairs.append((" ".join(question).strip(), " ".join(answer).strip()))
            question, answer = [m.group(2)], None
        elif m and question is not None:
            answer = [m.group(2)]
        elif line.strip() and answer is not None:
            answer.append(line.strip())
        elif line.strip() and question is not None and answer is None:
            question.append(line.strip())
    if question and answer:
        pairs.append((" ".join(question).strip(), " ".join(answer).strip()))
    return [(q, a) for q, a in pairs if q and a]


_ROLE_LINE = re.compile(r"^\s*\**\s*(User|Human|Assistant|AI)\s*\**\s*:\s*(.*)$", re.I)


def _conversation(value: Any) -> Messages | None:
    if not isinstance(value, list) or not value:
        return None
    out: Messages = []
    for msg in value:
        if not isinstance(msg, dict):
            return None
        role, content = msg.get("role"), _text(msg.get("content"))
        expected = "user" if len(out) % 2 == 0 else "assistant"
        if role != expected or not content:
            return None
        out.append({"role": role, "content": content})
    return out if len(out) % 2 == 0 else None


def parse_conversations(text: str) -> list[Messages]:
    """Conversations (alternating user/assistant, ending with the assistant) from a completion."""
    for value in _json_values(text):
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            convs = [c for c in map(_conversation, value) if c]
        else:
            convs = [c for c in [_conversation(value)] if c]
        if convs:
            return convs
    messages: Messages = []
    for line in text.splitlines():
        m = _ROLE_LINE.match(line)
        if m:
            role = "user" if m.group(1).lower() in ("user", "human") else "assistant"
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"] += " " + m.group(2).strip()
            else:
                messages.append({"role": role, "content": m.group(2).strip()})
        elif line.strip() and messages:
            messages[-1]["content"] += " " + line.strip()
    messages = [m for m in messages if m["content"]]
    if messages and messages[0]["role"] != "user":
        messages = messages[1:]
    if len(messages) % 2:
        messages = messages[:-1]
    ok = len(messages) >= 2 and all(m["role"] == ("user", "assistant")[i % 2] for i, m in enumerate(messages))
    return [messages] if ok else []
