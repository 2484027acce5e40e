"""Prompt templates: text files shipped in `loop/seed/prompts/`, or the user's own (`--prompt-file`).

A template holds `{title}`, `{chunk}` and `{n}`, replaced literally (not `str.format`, so the JSON
examples' braces need no escaping). Rows record the sha256 of the template they came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from loop.errors import ConfigError

PROMPTS_DIR = Path(__file__).with_name("prompts")
QA_TEMPLATE = PROMPTS_DIR / "qa.txt"
CONVERSATION_TEMPLATE = PROMPTS_DIR / "conversation.txt"
PLACEHOLDERS = ("{title}", "{chunk}", "{n}")


@dataclass(frozen=True)
class Template:
    path: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, title: str, chunk: str, n: int) -> str:
        # {chunk} last: a document that contains "{n}" or "{title}" must stay as written
        return self.text.replace("{title}", title).replace("{n}", str(n)).replace("{chunk}", chunk)


def load_template(path: str | Path) -> Template:
    """A template file; `ConfigError` when it is missing, unreadable or lacks `{chunk}`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("prompt file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read prompt file ({exc}); save it as UTF-8 text", file=path) from None
    if "{chunk}" not in text:
        raise ConfigError(
            "prompt template has no {chunk} placeholder; add it where the passage goes "
            "(also available: {title}, {n})",
            file=path,
        )
    return Template(str(path), text)
